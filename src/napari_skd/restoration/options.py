"""Tiling options of a restoration job: defaults per spatial dimensionality, validation with messages for users.

Defaults do not depend on the device, so a job started on a GPU can be resumed on the CPU (the output bytes then
differ only by the devices' arithmetic). ``halo`` equals ``overlap``: each block reads ``overlap`` voxels of context
on every side, and tiles inside its region overlap by at least ``overlap``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from .blend import WINDOWS
from .plan import snap_up

#: Per spatial dimensionality: largest tile, overlap (= halo) and output chunk (block) shape. A 2048 x 2048 block
#: reads 2112 x 2112 and runs 3 x 3 tiles of 728 (the plan shrinks tiles to what is needed): 88 % of the work is
#: output. 3D halos cost more: a 128 x 256 x 256 block runs 2 x 3 x 3 tiles of 88 x 112 x 112 (42 %).
DEFAULTS: dict[int, dict[str, Any]] = {
    2: {"tile": (1024, 1024), "overlap": 32, "chunks": (2048, 2048)},
    3: {"tile": (128, 128, 128), "overlap": 16, "chunks": (128, 256, 256)},
}


@dataclass(frozen=True)
class Options:
    """Resolved options; every field except ``batch_size`` is part of the job's fingerprint."""

    tile: tuple[int, ...]
    overlap: int
    halo: int
    chunks: tuple[int, ...]
    window: str
    dtype: str
    batch_size: int

    def job(self) -> dict[str, Any]:
        return {
            "tile": list(self.tile),
            "overlap": self.overlap,
            "halo": self.halo,
            "chunks": list(self.chunks),
            "window": self.window,
            "dtype": self.dtype,
        }


def resolve_options(
    spatial_shape: Sequence[int],
    *,
    multiple: int,
    input_dtype: Any,
    tile: int | Sequence[int] | None = None,
    overlap: int | None = None,
    chunks: int | Sequence[int] | None = None,
    window: str = "cosine",
    dtype: str = "float32",
    batch_size: int | None = None,
    device_type: str = "cpu",
) -> Options:
    d = len(spatial_shape)
    axes = "ZYX"[-d:]
    defaults = DEFAULTS[d]
    overlap = defaults["overlap"] if overlap is None else overlap
    if not isinstance(overlap, (int, np.integer)) or overlap < 0:
        raise InputError(f"overlap must be a whole number of voxels >= 0, got {overlap!r}")
    tiles = _per_axis("tile", tile, defaults["tile"], axes)
    small = [t for t in tiles if t < multiple]
    if small:
        raise InputError(
            f"tile {tile!r} is smaller than the model's multiple {multiple}: expected at least {multiple} voxels per "
            f"axis (tiles are snapped up to multiples of {multiple}); pass a larger tile, e.g. tile={8 * multiple}"
        )
    tiles = tuple(snap_up(t, multiple) for t in tiles)
    if min(tiles) <= overlap:
        raise InputError(
            f"tile {tiles} must be larger than the overlap {overlap} along every axis, or tiles cannot advance; "
            f"pass a larger tile or a smaller overlap (e.g. overlap={min(tiles) // 4})"
        )
    block = _per_axis("chunks", chunks, defaults["chunks"], axes)
    block = tuple(min(c, n) for c, n in zip(block, spatial_shape, strict=True))
    if window not in WINDOWS:
        raise InputError(f"unknown window {window!r}: expected one of {', '.join(WINDOWS)}")
    out_dtype = _output_dtype(dtype, input_dtype)
    if batch_size is None:
        batch_size = 1 if device_type == "cpu" else 4
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    return Options(tiles, int(overlap), int(overlap), block, window, out_dtype, int(batch_size))


def _per_axis(name: str, value: Any, default: Sequence[int], axes: str) -> tuple[int, ...]:
    """An int for every spatial axis, or one per axis in ``axes`` order."""
    if value is None:
        return tuple(int(v) for v in default)
    single = isinstance(value, (int, np.integer)) or not isinstance(value, (list, tuple, np.ndarray))
    values = [value] * len(axes) if single else list(value)
    if len(values) != len(axes) or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in values):
        raise InputError(
            f"{name} {value!r} is not valid: expected one positive whole number, or one per spatial axis "
            f"({', '.join(axes)}), e.g. {name}={tuple(default)}"
        )
    return tuple(int(v) for v in values)


def _output_dtype(dtype: Any, input_dtype: Any) -> str:
    """``"float32"`` (default), ``"input"`` (the input's dtype) or another numeric numpy dtype."""
    if isinstance(dtype, str) and dtype == "input":
        return np.dtype(input_dtype).name
    try:
        out = np.dtype(dtype)
    except TypeError:
        out = None
    if out is None or out.kind not in "uif":
        raise InputError(
            f"output dtype {dtype!r} is not supported: expected 'float32' (default), 'input' (the input's dtype, "
            "values clipped to its range) or a numeric numpy dtype such as 'uint16'"
        )
    return out.name
