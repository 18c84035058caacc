"""``load_checkpoint``: a napari-skd checkpoint, a shipped model by name, or an official Restormer file.

The file is read by ``safe.safe_load`` (no pickled code runs) and its weights are checked against the architecture by
``safe.model_with_weights`` before anything is copied; official Restormer files are handed to ``official``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import ValidationError

from ..errors import CheckpointError
from ..models import ModelConfig
from ..normalize import Normalization
from ..pretrained.names import is_pretrained_name, resolve
from .format import FORMAT, FORMAT_VERSION, Checkpoint
from .official import looks_official, official_checkpoint
from .safe import model_with_weights, safe_load


def written_by_us(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a checkpoint napari-skd saved (its ``format`` says so); read without running code."""
    try:
        obj = safe_load(path)
    except CheckpointError:
        return False
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Load a napari-skd checkpoint, a shipped model by name (``pretrained:general-2d``), or import an official
    Restormer ``.pth`` as a teacher."""
    if is_pretrained_name(path):
        path = resolve(path)
    obj = safe_load(path)
    if isinstance(obj, dict) and obj.get("format") != FORMAT and looks_official(obj):
        return official_checkpoint(obj, path)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a napari-skd checkpoint nor an official Restormer file; "
            "expected a file written by napari-skd (train-teacher, distill) or a Restormer .pth"
        )
    version = obj.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path} has an invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written with checkpoint format {version}, newer than this napari-skd reads "
            f"({FORMAT_VERSION}); upgrade napari-skd to open it"
        )
    role = obj.get("role")
    if role not in ("teacher", "student"):
        raise CheckpointError(f"{path} has an invalid role {role!r}; expected 'teacher' or 'student'")
    try:
        config = ModelConfig.model_validate_json(obj["config"])
        norm = Normalization.model_validate_json(obj["norm"]) if obj.get("norm") else None
        record = json.loads(obj.get("record") or "{}")
    except (ValidationError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} has a damaged architecture or metadata section: {exc}") from exc
    model = model_with_weights(config, obj.get("state_dict"), path)
    return Checkpoint(
        model=model,
        config=config,
        role=role,
        norm=norm,
        record=record,
        teacher_hash=obj.get("teacher_hash"),
        format_version=version,
        path=Path(path),
    )
