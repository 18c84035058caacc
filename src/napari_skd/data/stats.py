"""Dataset-wide percentile statistics from a bounded random sample (never a whole large volume in memory)."""

from __future__ import annotations

import itertools

import dask.array as da
import numpy as np

from ..errors import InputError
from ..normalize import Normalization


def estimate_percentiles(
    arrays: list[da.Array],
    pmin: float = 1.0,
    pmax: float = 99.8,
    max_samples: int = 2_000_000,
    seed: int = 0,
    channel_axis: int | None = None,
) -> Normalization:
    """Percentile normalisation of a dataset: one pair of bounds, or one per channel along ``channel_axis`` when the
    arrays have several channels there (each channel estimated on its own, with the same sampling).

    Arrays whose total size is at most ``max_samples`` are read whole (exact percentiles); larger ones contribute
    random chunks until about ``max_samples`` values are gathered, then a random subset of each chunk.
    """
    channels = arrays[0].shape[channel_axis] if channel_axis is not None and arrays[0].ndim else 1
    if channels > 1:
        per = [
            _estimate([da.take(a, [c], axis=channel_axis) for a in arrays], pmin, pmax, max_samples, seed)
            for c in range(channels)
        ]
        return Normalization(pmin=pmin, pmax=pmax, low=tuple(n.low for n in per), high=tuple(n.high for n in per))
    return _estimate(arrays, pmin, pmax, max_samples, seed)


def _estimate(arrays: list[da.Array], pmin: float, pmax: float, max_samples: int, seed: int) -> Normalization:
    """One pair of bounds for all values of ``arrays``."""
    rng = np.random.default_rng(seed)
    total = sum(a.size for a in arrays)
    if total == 0:
        raise InputError("the training data is empty (an array with a zero-size axis)")
    values = []
    for a in arrays:
        if total <= max_samples:
            values.append(np.asarray(a.compute(), dtype=np.float64).ravel())
            continue
        budget = max(1, int(max_samples * a.size / total))
        blocks = list(itertools.product(*(range(n) for n in a.numblocks)))
        rng.shuffle(blocks)
        got = 0
        for idx in blocks:
            block = np.asarray(a.blocks[idx].compute(), dtype=np.float64).ravel()
            take = min(block.size, max(1, budget // 4), budget - got)
            values.append(rng.choice(block, size=take, replace=False))
            got += take
            if got >= budget:
                break
    sample = np.concatenate(values)
    if not np.isfinite(sample).all():
        raise InputError(
            "the training data contains NaN or Inf pixels; replace them (e.g. with numpy.nan_to_num) before training"
        )
    low, high = np.percentile(sample, (pmin, pmax))
    if high <= low:
        huge = max(abs(low), abs(high)) >= 2**53  # float64 (and the float32 models) cannot tell such values apart
        raise InputError(
            f"the training data is constant between the {pmin} and {pmax} percentiles (value {low}); "
            + (
                "its values are too large for floating point to tell them apart; subtract an offset "
                "(e.g. data - data.min()) or convert to a smaller integer type first"
                if huge
                else "check that the right images were given"
            )
        )
    return Normalization(pmin=pmin, pmax=pmax, low=float(low), high=float(high))
