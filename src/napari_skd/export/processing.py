"""Normalisation as bioimage.io pre/post-processing: the steps built from a checkpoint, and applying them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..checkpoint import Checkpoint
from .layout import ExportError


def _scaling(ck: Checkpoint) -> tuple[Any, Any] | None:
    """(gain, offset) of the pre-processing ``x * gain + offset`` (lists for per-channel bounds); None for identity."""
    if ck.norm is None:
        return None
    low, high = np.atleast_1d(ck.norm.low), np.atleast_1d(ck.norm.high)
    gain, offset = 1.0 / (high - low), -low / (high - low)
    if ck.norm.channels:
        return [float(g) for g in gain], [float(o) for o in offset]
    gain, offset = float(gain[0]), float(offset[0])
    return None if (gain, offset) == (1.0, 0.0) else (gain, offset)


def norm_span(ck: Checkpoint) -> float:
    """``high - low`` of the checkpoint's normalisation (the widest channel's; 1 for identity)."""
    return float(np.max(np.atleast_1d(ck.norm.high) - np.atleast_1d(ck.norm.low))) if ck.norm else 1.0


def processing_descrs(ck: Checkpoint) -> tuple[list, list]:
    """The pre- and post-processing descriptors: float32, then ``scale_linear`` and its inverse unless identity
    (along the channel axis for per-channel bounds)."""
    from bioimageio.spec.model import v0_5 as bio  # optional dependency: imported on use

    f32 = bio.EnsureDtypeDescr(kwargs=bio.EnsureDtypeKwargs(dtype="float32"))
    scale = _scaling(ck)
    if scale is None:
        return [f32], [f32]
    assert ck.norm is not None
    gain, offset = scale
    low, high = ck.norm.low, ck.norm.high
    if ck.norm.channels:
        span = [h - lo for lo, h in zip(low, high, strict=True)]
        pre = bio.ScaleLinearAlongAxisKwargs(axis="channel", gain=gain, offset=offset)
        post = bio.ScaleLinearAlongAxisKwargs(axis="channel", gain=span, offset=list(low))
    else:
        pre = bio.ScaleLinearKwargs(gain=gain, offset=offset)
        post = bio.ScaleLinearKwargs(gain=high - low, offset=low)
    return [f32, bio.ScaleLinearDescr(kwargs=pre)], [bio.ScaleLinearDescr(kwargs=post), f32]


def as_steps(descrs: Sequence[Any]) -> list[tuple[str, dict]]:
    """Processing descriptors as ``(id, kwargs)`` pairs for ``apply_processing``."""
    return [(d.id, d.kwargs.model_dump(mode="json", exclude_none=True)) for d in descrs]


def apply_processing(steps: Sequence[tuple[str, Mapping[str, Any]]], x: np.ndarray) -> np.ndarray:
    """Apply bioimage.io ``ensure_dtype`` / ``scale_linear`` steps (``(id, kwargs)``) as consumers do, in float32."""
    for op, kw in steps:
        if op == "ensure_dtype":
            x = x.astype(kw["dtype"])
        elif op == "scale_linear" and kw.get("axis") is None:
            x = x * np.float32(kw["gain"]) + np.float32(kw["offset"])
        elif op == "scale_linear" and kw.get("axis") == "channel":  # tensors are (batch, channel, ...)
            shape = (1, -1) + (1,) * (x.ndim - 2)
            gain, offset = np.float32(kw["gain"]).reshape(shape), np.float32(kw["offset"]).reshape(shape)
            x = x * gain + offset
        else:
            raise ExportError(f"check_package does not implement the processing step {op!r} {dict(kw)}")
    return x


def norm_text(ck: Checkpoint) -> str:
    """The normalisation and its processing steps, in words (for the README)."""
    if ck.norm is None:
        return "identity: the network sees intensities as they are (no scale_linear)"
    n = ck.norm
    return (
        f"percentiles {n.pmin} / {n.pmax} of the training data: {n.bounds_text(6)}"
        f"{' (per channel)' if n.channels else ''}; "
        f"pre-processing scale_linear(gain=1/(high-low), offset=-low/(high-low)), post-processing its inverse "
        f"scale_linear(gain=high-low, offset=low)"
    )
