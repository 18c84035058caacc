"""Does an input's intensity range match the one its model was trained on?

A model learns on intensities normalised with its training data's percentiles (``Normalization``). An input in other
units, such as a CT slice in Hounsfield units through a microscopy model, or an 8-bit RGB image through a 16-bit
model, lands far outside the range the model has seen, and its output is meaningless. Before restoring, the input's
own percentiles (the same ones, from a bounded random sample) are compared with the checkpoint's: mapped through the
checkpoint's normalisation, they should lie near [0, 1] (a narrower span is fine: a crop of background has one), and
an integer input's type must be able to hold a fair part of the training range.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ..data.stats import estimate_percentiles
from ..errors import InputError
from ..normalize import Normalization

Intensities = Literal["check", "renormalize", "as-is"]
#: The input's normalised percentile span may be this many times wider than [0, 1] ...
SPAN = 5.0
#: ... and its centre may lie this far from 0.5 (in units of the training range).
OFFSET = 1.5
SAMPLES = 200_000  # values read to estimate the input's percentiles (whole chunks, subsampled)


def observed(data: Any, norm: Normalization, channel_axis: int | None) -> Normalization | None:
    """The input's own percentiles (those ``norm`` was made with; per channel when ``norm`` is), or None for data
    they cannot describe (constant, NaN: the restoration reports those itself)."""
    axis = channel_axis if norm.channels else None
    try:
        return estimate_percentiles([data], norm.pmin, norm.pmax, max_samples=SAMPLES, channel_axis=axis)
    except InputError:
        return None


def far_apart(seen: Normalization, trained: Normalization, dtype: Any = None) -> bool:
    """Whether an input is too far from the training data for the model's output to mean much: its normalised
    percentile span is over :data:`SPAN` times wider than [0, 1], or its centre lies over :data:`OFFSET` ranges from
    the training range's; or its integer ``dtype`` cannot even hold a :data:`SPAN`-th of the training range (8-bit
    data through a model of 16-bit data). A narrow span alone is allowed: a crop of flat background has one. With
    bounds per channel, one channel far apart is enough."""
    if trained.channels and seen.channels == trained.channels:
        return any(far_apart(seen.channel(c), trained.channel(c), dtype) for c in range(trained.channels))
    trained = trained.channel(0) if trained.channels else trained
    seen = seen.channel(0) if seen.channels else seen
    a, b = trained.apply(seen.low), trained.apply(seen.high)
    if b - a > SPAN or abs((a + b) / 2 - 0.5) > OFFSET:
        return True
    if dtype is not None and np.dtype(dtype).kind in "ui":
        info = np.iinfo(dtype)
        return trained.apply(float(info.max)) - trained.apply(float(info.min)) < 1 / SPAN
    return False


def effective_norm(
    data: Any, trained: Normalization | None, mode: Intensities, unit: str | None, channel_axis: int | None = None
) -> Normalization | None:
    """The normalisation to restore ``data`` with: the checkpoint's (checked unless ``as-is``), or the input's own
    percentiles with ``renormalize``; refuses an input whose intensities are far from the training data's."""
    if trained is None or mode == "as-is":
        return trained
    seen = observed(data, trained, channel_axis)
    if seen is None:
        return trained
    if mode == "renormalize":
        return seen
    if far_apart(seen, trained, data.dtype):
        units = f" {unit}" if unit else ""
        raise InputError(
            f"the input's intensities ({trained.pmin:g}-{trained.pmax:g} percentiles: {_span(seen)}{units}) are far "
            f"from those the model was trained on ({_span(trained)}): its output would be meaningless. Check that "
            "this is the right model for these images; to map the input's own percentiles onto the model's range "
            "pass intensities='renormalize' (--intensities renormalize), or intensities='as-is' to restore with the "
            "checkpoint's normalisation anyway"
        )
    return trained


def _span(norm: Normalization) -> str:
    """``-850 to 883.7``, or one span per channel."""
    if not norm.channels:
        return f"{norm.low:.4g} to {norm.high:.4g}"
    return "; ".join(f"channel {c}: {_span(norm.channel(c))}" for c in range(norm.channels))
