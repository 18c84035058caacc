"""Reading a checkpoint file without trusting it.

``torch.load(weights_only=True)`` never runs pickled code, and every weight's key and shape is checked against the
architecture before anything is built or copied from the file's say. ``load`` and ``official`` both read through here.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..models import ModelConfig, Restormer, UNet, build_model


def safe_load(path: str | os.PathLike) -> Any:
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


def model_with_weights(config: ModelConfig, state: Any, path: str | os.PathLike) -> Restormer | UNet:
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
