"""Starting training from a checkpoint (``init`` of a teacher job, ``student_init`` of a distillation)."""

from __future__ import annotations

from torch import nn

from ..checkpoint import load_checkpoint
from ..errors import InputError


def start_from(spec: str, channels: int, spatial_dims: int, what: str) -> tuple[nn.Module, dict]:
    """The network of checkpoint ``spec`` (its weights, in training mode) after checking that it takes ``channels``
    channels in ``spatial_dims`` D, and the record entry saying where training started."""
    ck = load_checkpoint(spec)
    cfg = ck.config
    if cfg.in_channels != channels or cfg.spatial_dims != spatial_dims:
        raise InputError(
            f"{what} {spec} is a {cfg.spatial_dims}D model of {cfg.in_channels} channel(s), but the job trains a "
            f"{spatial_dims}D model of {channels} channel(s); start from a checkpoint of this kind of image, or "
            "leave it out to train from scratch"
        )
    start = {"checkpoint": str(spec), "hash": ck.hash, "role": ck.role, "steps": ck.record.get("steps")}
    return ck.model.train(), start


def keep_best(setting: bool | None, init: str | None) -> bool:
    """``train.keep_best`` resolved: on by default when training starts from a checkpoint."""
    return bool(init) if setting is None else setting
