"""Resolution pyramids of an OME-Zarr: how many levels, their shapes, and keeping them in step with level 0.

Level k is a 2x mean of level k - 1 along the downsampled axes (Y and X), so a viewer zoomed out reads a small
level instead of the whole image. :func:`update_pyramid` recomputes every coarser voxel whose window touches a
region of level 0, reading each level from the one below it on disk. Called after each written block, it keeps the
pyramid filling in with level 0; the block that finishes last among those a voxel covers writes its final value,
so the result equals a pyramid built once at the end, whatever the order of the blocks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

#: ``pyramid_levels="auto"`` adds 2x levels until the coarsest fits this many pixels in Y and in X.
FIT_PX = 1024
DOWNSAMPLE = "YX"


def auto_levels(shape: Sequence[int], axes: str, fit: int = FIT_PX, downsample: str = DOWNSAMPLE) -> int:
    """The number of 2x levels after which every ``downsample`` side of ``shape`` is at most ``fit`` pixels."""
    sides = [int(n) for a, n in zip(axes, shape, strict=True) if a in downsample]
    k = 0
    while any(n >> k > fit for n in sides):
        k += 1
    return k


def checked_levels(value: Any) -> int | str:
    """A ``pyramid_levels`` setting: ``"auto"``, or a whole number from 0 to 10 (a digit string such as ``"3"``
    from a command line or YAML counts); a ValueError says what is allowed."""
    if value == "auto":
        return value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or not 0 <= value <= 10:
        raise ValueError(
            f"pyramid_levels must be 'auto' or a whole number >= 0 (0: level 0 only; at most 10), got {value!r}"
        )
    return int(value)


def resolve_levels(value: int | str, shape: Sequence[int], axes: str) -> int:
    """The levels a ``pyramid_levels`` setting gives an image of ``shape``: :func:`auto_levels` for ``"auto"``."""
    value = checked_levels(value)
    return auto_levels(shape, axes) if value == "auto" else int(value)


def level_shapes(shape: Sequence[int], axes: str, levels: int, downsample: str = DOWNSAMPLE) -> list[tuple[int, ...]]:
    """Shapes of levels 1..``levels`` (halved, rounded down, along ``downsample``); stops before a side reaches 0."""
    shapes: list[tuple[int, ...]] = []
    current = tuple(int(n) for n in shape)
    for _ in range(levels):
        current = tuple(n // 2 if a in downsample else n for a, n in zip(axes, current, strict=True))
        if min(current) < 1:
            break
        shapes.append(current)
    return shapes


def level_chunks(
    chunks: Sequence[int], shape: Sequence[int], axes: str, k: int, downsample: str = DOWNSAMPLE, least: int = 256
) -> tuple[int, ...]:
    """Chunks of level ``k``: level 0's, halved ``k`` times along ``downsample`` but not below ``least`` (nor below
    level 0's own), capped to the level's ``shape``. A block of level 0 then maps onto about one chunk per level, so
    updating the pyramid after a block rewrites little besides its own footprint."""
    return tuple(
        min(max(c >> k, min(c, least)) if a in downsample else c, n)
        for a, c, n in zip(axes, chunks, shape, strict=True)
    )


def update_pyramid(
    arrays: Sequence[Any], axes: str, region: Sequence[slice | int], downsample: str = DOWNSAMPLE
) -> None:
    """Recompute levels ``arrays[1:]`` wherever their 2x windows touch ``region`` of ``arrays[0]``.

    ``region`` indexes level 0 (integers and ``slice(None)`` allowed, as block indices are); each level is read
    from the one below it, chunk by chunk of the coarser level, so memory stays at one chunk's worth.
    """
    bounds = [_bounds(r, n) for r, n in zip(region, arrays[0].shape, strict=True)]
    for source, target in zip(arrays[:-1], arrays[1:], strict=True):
        bounds = [
            (lo // 2, min(-(-hi // 2), m)) if a in downsample else (lo, hi)
            for a, (lo, hi), m in zip(axes, bounds, target.shape, strict=True)
        ]
        if any(lo >= hi for lo, hi in bounds):
            return
        _refresh(source, target, axes, bounds, downsample)


def _bounds(index: slice | int, n: int) -> tuple[int, int]:
    if isinstance(index, slice):
        start, stop, _ = index.indices(n)
        return start, stop
    return int(index), int(index) + 1


def _refresh(source: Any, target: Any, axes: str, bounds: list[tuple[int, int]], downsample: str) -> None:
    """Write the 2x means of ``source`` into ``target`` over ``bounds`` (target voxels), one target chunk at a time."""
    chunks = target.chunks
    ranges = [range(lo // c, math.ceil(hi / c)) for (lo, hi), c in zip(bounds, chunks, strict=True)]
    pooled = [a in downsample for a in axes]
    for index in np.ndindex(*(len(r) for r in ranges)):
        out = []
        for r, i, c, (lo, hi) in zip(ranges, index, chunks, bounds, strict=True):
            k = r[i]
            out.append(slice(max(k * c, lo), min((k + 1) * c, hi)))
        src = tuple(slice(2 * s.start, 2 * s.stop) if p else s for s, p in zip(out, pooled, strict=True))
        target[tuple(out)] = mean_pool(np.asarray(source[src]), pooled, target.dtype)


def mean_pool(x: np.ndarray, pooled: Sequence[bool], dtype: Any) -> np.ndarray:
    """2x mean over the ``pooled`` axes (their lengths are even); integers are rounded and clipped."""
    shape: list[int] = []
    pairs: list[int] = []
    for n, p in zip(x.shape, pooled, strict=True):
        if p:
            shape += [n // 2, 2]
            pairs.append(len(shape) - 1)
        else:
            shape.append(n)
    y = x.reshape(shape).mean(axis=tuple(pairs), dtype=np.float64)
    if np.dtype(dtype).kind in "ui":
        info = np.iinfo(dtype)
        y = np.clip(np.rint(y), info.min, info.max)
    return y.astype(dtype)
