"""Normalisation as bioimage.io pre/post-processing: the steps built from a checkpoint, and applying them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..checkpoint import Checkpoint
from .layout import ExportError


def _scaling(ck: Checkpoint) -> tuple[float, float] | None:
    """(gain, offset) of the pre-processing ``x * gain + offset``; None for identity normalisation."""
    if ck.norm is None:
        return None
    span = norm_span(ck)
    gain, offset = 1.0 / span, -ck.norm.low / span
    return None if (gain, offset) == (1.0, 0.0) else (gain, offset)


def norm_span(ck: Checkpoint) -> float:
    """``high - low`` of the checkpoint's normalisation (1 for identity)."""
    return ck.norm.high - ck.norm.low if ck.norm else 1.0


def processing_descrs(ck: Checkpoint) -> tuple[list, list]:
    """The pre- and post-processing descriptors: float32, then ``scale_linear`` and its inverse unless identity."""
    from bioimageio.spec.model import v0_5 as bio  # optional dependency: imported on use

    f32 = bio.EnsureDtypeDescr(kwargs=bio.EnsureDtypeKwargs(dtype="float32"))
    scale = _scaling(ck)
    if scale is None:
        return [f32], [f32]
    gain, offset = scale
    assert ck.norm is not None
    return (
        [f32, bio.ScaleLinearDescr(kwargs=bio.ScaleLinearKwargs(gain=gain, offset=offset))],
        [
            bio.ScaleLinearDescr(kwargs=bio.ScaleLinearKwargs(gain=norm_span(ck), offset=ck.norm.low)),
            bio.EnsureDtypeDescr(kwargs=bio.EnsureDtypeKwargs(dtype="float32")),
        ],
    )


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
        else:
            raise ExportError(f"check_package does not implement the processing step {op!r} {dict(kw)}")
    return x


def norm_text(ck: Checkpoint) -> str:
    """The normalisation and its processing steps, in words (for the README)."""
    if ck.norm is None:
        return "identity: the network sees intensities as they are (no scale_linear)"
    n = ck.norm
    return (
        f"percentiles {n.pmin} / {n.pmax} of the training data: low {n.low:.6g}, high {n.high:.6g}; "
        f"pre-processing scale_linear(gain=1/(high-low), offset=-low/(high-low)), post-processing its inverse "
        f"scale_linear(gain=high-low, offset=low)"
    )
