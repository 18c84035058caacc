"""Options of a restoration: one pydantic model for ``restore()``, ``RestoreJob`` (YAML, CLI flags) and the Restore
widget, and their resolution against an image and a model.

Defaults do not depend on the device, so a job started on a GPU can be resumed on the CPU (the output bytes then
differ only by the devices' arithmetic). Each block reads ``overlap`` voxels of context on every side (the halo),
and tiles inside its region overlap by at least ``overlap``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import InputError
from ..io.pyramid import FIT_PX, checked_levels, resolve_levels
from .blend import WINDOWS, Window
from .intensities import Intensities
from .plan import snap_up

#: Per spatial dimensionality: largest tile, overlap (= halo) and output chunk (block) shape. A 2048 x 2048 block
#: reads 2112 x 2112 and runs 3 x 3 tiles of 728 (the plan shrinks tiles to what is needed): 88 % of the work is
#: output. 3D halos cost more: a 128 x 256 x 256 block runs 2 x 3 x 3 tiles of 88 x 112 x 112 (42 %).
DEFAULTS: dict[int, dict[str, Any]] = {
    2: {"tile": (1024, 1024), "overlap": 32, "chunks": (2048, 2048)},
    3: {"tile": (128, 128, 128), "overlap": 16, "chunks": (128, 256, 256)},
}
#: Tiles per model call on accelerators when ``batch_size`` is not given (the CPU always runs one, see tiles_per_call).
GPU_BATCH = 4

Sides = int | tuple[int, ...]  # one side for every spatial axis, or one per axis (ZYX order)


def _defaults(name: str) -> str:
    """``(default: 1024 in 2D, 128 in 3D)`` for a field of :data:`DEFAULTS`."""
    sides = {d: [str(v) for v in np.atleast_1d(DEFAULTS[d][name])] for d in DEFAULTS}
    text = [f"{s[0] if len(set(s)) == 1 else 'x'.join(s)} in {d}D" for d, s in sides.items()]
    return f"(default: {', '.join(text)})"


class RestoreOptions(BaseModel):
    """How an image is restored: tiling, output type, pyramid and where it runs (``None``: the default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    axes: str | None = Field(None, description="Axes of the input when the file does not say (OME letters, e.g. ZYX).")
    tile: Sides | None = Field(None, description=f"Largest model tile: one side or one per axis {_defaults('tile')}.")
    overlap: int | None = Field(
        None, ge=0, description=f"Tile overlap and block halo in voxels {_defaults('overlap')}."
    )
    chunks: Sides | None = Field(
        None, description=f"Output block = zarr chunk: one side or one per axis {_defaults('chunks')}."
    )
    batch_size: int | None = Field(
        None, ge=1, description=f"Tiles per model call on a GPU (default: {GPU_BATCH}; the CPU runs one at a time)."
    )
    window: Window = Field("cosine", description="Blending window of overlapping tiles.")
    dtype: str = Field(
        "float32", description="Output type: float32, input (the input's type, rounded and clipped) or e.g. uint16."
    )
    pyramid_levels: int | str = Field(
        "auto",
        description="Extra 2x-downsampled levels of an OME-Zarr output, filled in as blocks finish: auto (until the "
        f"smallest fits {FIT_PX} px in Y and X; none for smaller images) or a number (0: level 0 only).",
    )
    intensities: Intensities = Field(
        "check",
        description="check: refuse an input whose intensities are far from the training data's; renormalize: use "
        "the input's own percentiles; as-is: the checkpoint's normalisation, unchecked.",
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps.")
    distributed: str | int | None = Field(None, description="Dask scheduler address, or a number of local workers.")
    qc_teacher: Any = Field(
        None,
        description="Teacher checkpoint for fidelity QC: it restores a sample of the blocks and the output records "
        "how far the student departs from it (PSNR per block, under 'qc').",
    )
    qc_fraction: float = Field(0.05, description="Fraction of the blocks the QC teacher checks (at least one).")

    @field_validator("tile", "chunks", mode="before")
    @classmethod
    def _sides(cls, v: Any, info: Any) -> Any:
        if v is None:
            return None
        values = list(v) if isinstance(v, np.ndarray | list | tuple) else [v]  # [256] (one CLI value) is 256
        if not values or not all(_whole(s, 1) for s in values):
            raise ValueError(
                f"{info.field_name} {values[0] if len(values) == 1 else v!r} is not valid: expected one positive whole "
                "number, or one per spatial axis "
                f"(ZYX order), e.g. {info.field_name}=256 or {info.field_name}=(64, 256, 256)"
            )
        return int(values[0]) if len(values) == 1 else tuple(int(s) for s in values)

    @field_validator("overlap", "batch_size", mode="before")
    @classmethod
    def _count(cls, v: Any, info: Any) -> Any:
        low, what = {"overlap": (0, "whole number of voxels"), "batch_size": (1, "whole number")}[info.field_name]
        if v is not None and not _whole(v, low):
            raise ValueError(f"{info.field_name} must be a {what} >= {low}, got {v!r}")
        return None if v is None else int(v)

    @field_validator("pyramid_levels", mode="before")
    @classmethod
    def _levels(cls, v: Any) -> Any:
        return checked_levels(v)

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, v: Any) -> Any:
        if v not in WINDOWS:
            raise ValueError(f"unknown window {v!r}: expected one of {', '.join(WINDOWS)}")
        return v

    @field_validator("dtype", mode="before")
    @classmethod
    def _dtype(cls, v: Any) -> str:
        if isinstance(v, str) and v == "input":
            return v
        try:
            out = np.dtype(v)
        except TypeError:
            out = None
        if out is None or out.kind not in "uif":
            raise ValueError(
                f"output dtype {v!r} is not supported: expected 'float32' (default), 'input' (the input's dtype, "
                "values clipped to its range) or a numeric numpy dtype such as 'uint16'"
            )
        return out.name

    @field_validator("distributed", mode="before")
    @classmethod
    def _distributed(cls, v: Any) -> Any:
        if isinstance(v, str) and v.isdigit():
            v = int(v)
        if isinstance(v, bool) or not (v is None or isinstance(v, int | np.integer | str)):
            raise ValueError(f"distributed must be a scheduler address or a number of local workers, not {v!r}")
        if isinstance(v, int | np.integer) and v < 1:
            raise ValueError(f"distributed={v}: expected at least 1 local worker")
        return int(v) if isinstance(v, int | np.integer) else v

    @field_validator("qc_fraction", mode="before")
    @classmethod
    def _fraction(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int | float | np.number) or not 0 < v <= 1:
            raise ValueError(f"qc_fraction {v!r} is not valid: expected a fraction of the blocks in (0, 1], e.g. 0.05")
        return float(v)

    @classmethod
    def of(cls, **values: Any) -> RestoreOptions:
        """Validated options; a wrong one raises an :class:`InputError` that says what was expected."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise InputError("; ".join(_reason(e) for e in exc.errors())) from None


def _whole(v: Any, low: int) -> bool:
    """``v`` is a whole number (not a bool) >= ``low``."""
    return isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= low


def _reason(error: Any) -> str:
    """A validation error as its own sentence (our validators' messages), else ``field: pydantic's reason``."""
    ctx = error.get("ctx") or {}
    if error.get("type") == "value_error" and "error" in ctx:
        return str(ctx["error"])
    return f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"


def tiles_per_call(batch_size: int, device_type: str) -> int:
    """Tiles per model call: ``batch_size`` on accelerators; one on the CPU, where tiles run in parallel threads
    instead so that the bytes do not depend on the batch (see ``infer``)."""
    return 1 if device_type == "cpu" else batch_size


@dataclass(frozen=True)
class Options:
    """Options resolved for one image and model; every field except ``batch_size`` is part of the fingerprint."""

    tile: tuple[int, ...]
    overlap: int
    chunks: tuple[int, ...]
    window: Window
    dtype: str
    batch_size: int
    pyramid_levels: int | str = "auto"  # not fingerprinted: a resumed run may ask for more levels

    def levels_for(self, shape: Sequence[int], axes: str) -> int:
        """The pyramid levels an output of ``shape`` (dimensions ``axes``) gets: ``auto`` resolved, or the number."""
        return resolve_levels(self.pyramid_levels, shape, axes)

    def job(self) -> dict[str, Any]:
        """The fingerprinted options (``halo`` is kept as its own key, equal to ``overlap``, so outputs written
        before it was folded into ``overlap`` keep resuming)."""
        return {
            "tile": list(self.tile),
            "overlap": self.overlap,
            "halo": self.overlap,
            "chunks": list(self.chunks),
            "window": self.window,
            "dtype": self.dtype,
        }


def resolve_options(
    spatial_shape: Sequence[int], options: RestoreOptions, *, multiple: int, input_dtype: Any, device_type: str
) -> Options:
    """``options`` made concrete for an image of ``spatial_shape`` (2D or 3D) and a model tiling in ``multiple``."""
    d = len(spatial_shape)
    axes = "ZYX"[-d:]
    defaults = DEFAULTS[d]
    overlap = defaults["overlap"] if options.overlap is None else options.overlap
    tiles = _per_axis("tile", options.tile, defaults["tile"], axes)
    if any(t < multiple for t in tiles):
        raise InputError(
            f"tile {options.tile!r} is smaller than the model's multiple {multiple}: expected at least {multiple} "
            f"voxels per axis (tiles are snapped up to multiples of {multiple}); pass a larger tile, e.g. "
            f"tile={8 * multiple}"
        )
    tiles = tuple(snap_up(t, multiple) for t in tiles)
    if min(tiles) <= overlap:
        raise InputError(
            f"tile {tiles} must be larger than the overlap {overlap} along every axis, or tiles cannot advance; "
            f"pass a larger tile or a smaller overlap (e.g. overlap={min(tiles) // 4})"
        )
    block = _per_axis("chunks", options.chunks, defaults["chunks"], axes)
    block = tuple(min(c, n) for c, n in zip(block, spatial_shape, strict=True))
    dtype = np.dtype(input_dtype).name if options.dtype == "input" else options.dtype
    batch = options.batch_size if options.batch_size is not None else GPU_BATCH
    return Options(
        tiles, overlap, block, options.window, dtype, tiles_per_call(batch, device_type), options.pyramid_levels
    )


def _per_axis(name: str, value: Sides | None, default: Sequence[int], axes: str) -> tuple[int, ...]:
    """One value per spatial axis in ``axes`` order."""
    if value is None:
        return tuple(int(v) for v in default)
    values = (value,) * len(axes) if isinstance(value, int) else value
    if len(values) != len(axes):
        raise InputError(
            f"{name} {value!r} is not valid: expected one positive whole number, or one per spatial axis "
            f"({', '.join(axes)}), e.g. {name}={tuple(default)}"
        )
    return tuple(values)
