"""Teacher labels computed once, ahead of training, for fixed training data.

When the training images are fixed (recorded noisy images rather than a synthetic degradation drawn anew each step)
and a method needs only the teacher's outputs, the teacher restores every training image once, tile by tile, and the
sampler draws each patch's label with its input. A training step then costs what a student-only step costs.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import torch

from ..checkpoint import Checkpoint
from ..data.sampler import CACHE_BYTES
from ..progress import ProgressEvent, ProgressFn, emit
from ..restoration.api import restore
from .config import LossConfig
from .objectives import METHOD_TERMS, needs_teacher_features


def labels_ahead(cfg: LossConfig, volumes: list[da.Array] | None) -> bool:
    """Label ``volumes`` before training: fixed data that fits in memory, and a method that reads only outputs."""
    terms = METHOD_TERMS[cfg.method]
    uses_outputs = terms.target == "teacher" or terms.teacher_rec
    if cfg.teacher_labels != "auto" or volumes is None or needs_teacher_features(cfg) or not uses_outputs:
        return False
    return sum(v.nbytes for v in volumes) <= CACHE_BYTES // 2


def teacher_labels(
    teacher: Checkpoint, volumes: list[da.Array], device: torch.device, progress: ProgressFn | None = None
) -> list[np.ndarray]:
    """The teacher's restoration of each (S, C, Z, Y, X) volume, in data units (tiled, blended)."""
    out = []
    for i, volume in enumerate(volumes):
        emit(progress, ProgressEvent("label", i, len(volumes), message=f"teacher labels: image {i + 1}/{len(volumes)}"))
        restored = restore(
            np.asarray(volume, dtype=np.float32), teacher, axes="TCZYX", device=str(device), intensities="as-is"
        )  # training uses the teacher's normalisation as it is
        out.append(np.asarray(restored, dtype=np.float32).reshape(volume.shape))
    emit(progress, ProgressEvent("label", len(volumes), len(volumes), message="teacher labels ready"))
    return out
