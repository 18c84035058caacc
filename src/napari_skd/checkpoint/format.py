"""The checkpoint file format: what one file holds, its version, hashing, and atomic saving.

A checkpoint is a ``torch.save`` zip holding only tensors, strings and numbers:

- ``format`` ("napari-skd") and ``format_version``;
- ``role`` ("teacher" or "student") and, for a student, ``teacher_hash``;
- ``config`` (the architecture, JSON), ``state_dict`` (the weights), ``norm`` (normalisation, JSON or None);
- ``record`` (JSON: data, steps, seed, metrics, package versions).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy
import torch
from torch import nn

from .. import __version__
from ..errors import CheckpointError, write_error
from ..models import ModelConfig, Restormer, UNet
from ..normalize import Normalization

FORMAT = "napari-skd"
FORMAT_VERSION = 1
Role = Literal["teacher", "student"]


@dataclass
class Checkpoint:
    """A loaded checkpoint: the ready model (eval mode, on the CPU) and everything stored with it."""

    model: Restormer | UNet
    config: ModelConfig
    role: Role
    norm: Normalization | None = None
    record: dict[str, Any] = field(default_factory=dict)
    teacher_hash: str | None = None
    format_version: int = FORMAT_VERSION
    path: Path | None = None

    @property
    def hash(self) -> str:
        return model_hash(self.model)

    @property
    def per_input(self) -> bool:
        """A generalist: it maps each input by the input's own percentiles (it saw no user's training set)."""
        return self.record.get("normalization") == "per-input"


def model_hash(model: nn.Module) -> str:
    """SHA-256 of a model's architecture and weights (stable across save/load)."""
    h = hashlib.sha256()
    cfg = getattr(model, "config", None)
    if cfg is not None:
        h.update(cfg.model_dump_json().encode())
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().clone(memory_format=torch.contiguous_format)  # the same bytes for any layout
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    """Versions recorded in every checkpoint, to reproduce the training environment."""
    return {
        "napari_skd": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    role: Role = "teacher",
    norm: Normalization | dict | None = None,
    record: dict[str, Any] | None = None,
    teacher: nn.Module | Checkpoint | None = None,
) -> Path:
    """Write ``model`` and its metadata to ``path`` atomically (a crash never leaves half a file).

    ``norm=None`` means the model sees intensities unchanged. ``teacher`` (for a student) stores the teacher's hash.
    """
    if role not in ("teacher", "student"):
        raise CheckpointError(f"role must be 'teacher' or 'student', got {role!r}")
    cfg = getattr(model, "config", None)
    if not isinstance(cfg, ModelConfig):
        raise CheckpointError("only napari-skd models (built with build_model) can be saved as checkpoints")
    if isinstance(norm, dict):
        norm = Normalization.model_validate(norm)
    teacher_hash = None
    if teacher is not None:
        teacher_hash = teacher.hash if isinstance(teacher, Checkpoint) else model_hash(teacher)
    rec = {"created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "versions": package_versions()}
    rec.update(record or {})
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "role": role,
        "teacher_hash": teacher_hash,
        "config": cfg.model_dump_json(),
        "norm": norm.model_dump_json() if norm is not None else None,
        "record": json.dumps(rec, default=str),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # an ordinary file (mkstemp makes it private)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except OSError as err:  # e.g. a full disk: the temporary file goes, an earlier file at ``path`` stays whole
        if (message := write_error(path, err, "save again")) is None:
            raise
        raise message from err
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
