"""Import of official Restormer weights (swz30/Restormer ``.pth`` files, ``{'params': state_dict}``) as teachers.

The architecture is not stored in those files: it is read from the weights' names and shapes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from ..errors import CheckpointError
from ..models import ModelConfig
from .format import Checkpoint
from .safe import model_with_weights, safe_load

_LEVELS = ("encoder_level1", "encoder_level2", "encoder_level3", "latent")


def looks_official(obj: dict) -> bool:
    """Whether a loaded dict holds Restormer weights (under ``params``, ``state_dict`` or at the top level)."""
    state = obj.get("params", obj.get("state_dict", obj))
    return isinstance(state, dict) and "patch_embed.proj.weight" in state


def _count(state: dict, prefix: str) -> int:
    """Number of blocks in the sequence ``prefix`` (keys ``prefix.<i>.…``)."""
    return len({k.split(".")[1] for k in state if k.startswith(prefix + ".")})


def official_config(state: dict[str, torch.Tensor], **overrides: Any) -> ModelConfig:
    """Infer the ``ModelConfig`` of an official Restormer state dict."""
    if "skip_conv.weight" in state:
        raise CheckpointError(
            "this is a dual-pixel defocus-deblurring Restormer (it has skip_conv); napari-skd supports the "
            "single-image variants (denoising, deraining, motion deblurring)"
        )
    dim = state["patch_embed.proj.weight"].shape[0]
    hidden = state["encoder_level1.0.ffn.project_out.weight"].shape[1]
    expansion = 2.66 if int(dim * 2.66) == hidden else (hidden + 0.5) / dim
    kw: dict[str, Any] = dict(
        in_channels=state["patch_embed.proj.weight"].shape[1],
        out_channels=state["output.weight"].shape[0],
        dim=dim,
        num_blocks=tuple(_count(state, n) for n in _LEVELS),
        heads=tuple(state[f"{n}.0.attn.temperature"].shape[0] for n in _LEVELS),
        num_refinement_blocks=_count(state, "refinement"),
        ffn_expansion_factor=expansion,
        bias="encoder_level1.0.attn.qkv.bias" in state,
        layernorm_type="WithBias" if "encoder_level1.0.norm1.body.bias" in state else "BiasFree",
        spatial_dims=2,
    )
    kw.update(overrides)
    try:
        return ModelConfig(**kw)
    except ValidationError as exc:
        raise CheckpointError(f"the official Restormer weights give an invalid architecture: {exc}") from exc


def official_checkpoint(obj: dict, path: str | os.PathLike, **overrides: Any) -> Checkpoint:
    """Build the teacher checkpoint from a loaded official file (weights checked like any checkpoint's)."""
    state = obj.get("params", obj.get("state_dict", obj))
    try:
        config = official_config(state, **overrides)
    except KeyError as exc:
        raise CheckpointError(f"{path} looks like a Restormer file but lacks the weight {exc}") from exc
    model = model_with_weights(config, state, path)
    record = {"imported_from": str(path), "source": "official Restormer weights (swz30/Restormer)"}
    return Checkpoint(model=model, config=config, role="teacher", record=record, path=Path(path))


def import_restormer(path: str | os.PathLike, **build_overrides: Any) -> Checkpoint:
    """Import an official Restormer ``.pth`` (``{'params': state_dict}``) as a teacher checkpoint.

    The architecture is read from the weights; ``build_overrides`` may fix fields such as ``layernorm_type``.
    """
    obj = safe_load(path)
    if not isinstance(obj, dict) or not looks_official(obj):
        raise CheckpointError(
            f"{path} is not an official Restormer file: expected {{'params': state_dict}} with the Restormer's "
            "parameter names (patch_embed.proj.weight, ...)"
        )
    return official_checkpoint(obj, path, **build_overrides)
