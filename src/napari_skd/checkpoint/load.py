"""Loading checkpoints without trusting the file.

``torch.load(weights_only=True)`` never runs pickled code, and every weight's key and shape is checked against the
architecture before anything is built or copied from the file's say.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from ..errors import CheckpointError
from ..models import ModelConfig, Restormer, UNet, build_model
from ..normalize import Normalization
from ..pretrained.names import is_pretrained_name, resolve
from .format import FORMAT, FORMAT_VERSION, Checkpoint


def _safe_load(path: str | os.PathLike) -> Any:
    """``torch.load`` restricted to tensors and plain data, with user-facing errors."""
    if not isinstance(path, (str, os.PathLike)):
        raise CheckpointError(f"expected a checkpoint file path (or a loaded Checkpoint), got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; expected a checkpoint file (.pt or .pth)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" not in str(exc).lower():  # not an object reference: plain damage
            raise CheckpointError(
                f"could not read {path}: the file is damaged, truncated or not a PyTorch checkpoint"
            ) from exc
        raise CheckpointError(
            f"refused to load {path}: it contains Python objects other than tensors and plain data, which could "
            "run code on this computer. Only load model files from sources you trust; a trusted file can be "
            "re-saved with napari-skd to make it safe."
        ) from exc
    except Exception as exc:  # torch raises many types for damaged files  # noqa: BLE001
        raise CheckpointError(
            f"could not read {path}: the file is damaged, truncated or not a PyTorch checkpoint ({exc})"
        ) from exc


def written_by_us(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a checkpoint napari-skd saved (its ``format`` says so); read without running code."""
    try:
        obj = _safe_load(path)
    except CheckpointError:
        return False
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Load a napari-skd checkpoint, a shipped model by name (``pretrained:general-2d``), or import an official
    Restormer ``.pth`` as a teacher."""
    if is_pretrained_name(path):
        path = resolve(path)
    # official.py builds on this module's safe loading, so importing it at the top would be circular
    from .official import _import_state, _looks_official

    obj = _safe_load(path)
    if isinstance(obj, dict) and obj.get("format") != FORMAT and _looks_official(obj):
        return _import_state(obj, path)
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
    model = _model_with_weights(config, obj.get("state_dict"), path)
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


def _model_with_weights(config: ModelConfig, state: Any, path: str | os.PathLike) -> Restormer | UNet:
    """Build the model and load ``state`` after checking every key and shape (no allocation from the file's say)."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no valid weights")
    # Nothing is built from the file's say before these cheap checks: every block of the architecture has weights
    # (so a tiny file cannot ask for millions of blocks), and every tensor's values are stored in the file (a
    # broadcast view, stride 0, could declare terabytes backed by one number).
    blocks = sum(config.num_blocks) + config.num_refinement_blocks
    if blocks > len(state):
        raise CheckpointError(
            f"the architecture in {path} has {blocks} blocks but the file holds only {len(state)} weight tensors; "
            "the file is damaged or was not written by napari-skd"
        )
    for name, t in state.items():
        if t.numel() * t.element_size() > t.untyped_storage().nbytes():
            raise CheckpointError(
                f"the weight {name} in {path} declares shape {tuple(t.shape)} but the file stores only "
                f"{t.untyped_storage().nbytes()} bytes for it; the file is damaged or crafted, and was refused"
            )
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build_model(config).state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{label}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        )
        raise CheckpointError(f"the weights in {path} do not fit its architecture ({detail})")
    model = build_model(config)
    model.load_state_dict(state, strict=True)
    return model.eval()
