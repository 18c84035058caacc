"""How an image's axes meet a model: which axes the model sees, which are iterated outside, and the output's shape.

A 3D model sees Z, Y, X; a 2D model sees Y, X and runs slice by slice over every other axis (T, Z). Channels go to the
model's input channels when their counts match; a 1-channel model runs channel by channel; anything else is refused.
Input and output are in canonical TCZYX order. An output block is one spatial :class:`Block` at one outer position.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from .plan import Block


@dataclass(frozen=True)
class Layout:
    """The axes roles of one restoration job (``axes`` canonical, i.e. a subsequence of ``TCZYX``)."""

    axes: str
    shape: tuple[int, ...]
    spatial: str  # "YX" or "ZYX": what the model sees
    channels_to_model: bool  # the C axis (if any) is fed to the model as its input channels
    out_channels: int  # channels per model output

    @property
    def outer(self) -> str:
        """Axes iterated outside the model, one position at a time."""
        return "".join(a for a in self.axes if a not in self.spatial and not (a == "C" and self.channels_to_model))

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[self.axes.index(a)] for a in self.spatial)

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Output shape (same axes as the input; C holds the model's output channels when fed to the model)."""
        return tuple(
            self.out_channels if a == "C" and self.channels_to_model else n
            for a, n in zip(self.axes, self.shape, strict=True)
        )

    def out_chunks(self, block: Sequence[int]) -> tuple[int, ...]:
        """Output chunk shape: one position along outer axes, all channels, ``block`` along the spatial axes."""
        size = dict(zip(self.spatial, block, strict=True))
        return tuple(size.get(a, 1 if a in self.outer else n) for a, n in zip(self.axes, self.out_shape, strict=True))

    def outer_positions(self) -> list[tuple[int, ...]]:
        return list(itertools.product(*(range(self.shape[self.axes.index(a)]) for a in self.outer)))

    def index(self, outer: tuple[int, ...], spatial: tuple[slice, ...]) -> tuple:
        """Index into the (input or output) array: integers on outer axes, all channels, spatial slices."""
        at = dict(zip(self.outer, outer, strict=True)) | dict(zip(self.spatial, spatial, strict=True))
        return tuple(at.get(a, slice(None)) for a in self.axes)


@dataclass(frozen=True)
class OutputBlock:
    """One unit of work: a spatial block at one position of the outer axes; written exactly once."""

    outer: tuple[int, ...]
    block: Block

    @property
    def key(self) -> str:
        """Stable name (e.g. ``"3.0/1.2"``: outer position 3, 0; block 1, 2; ``"1.2"`` without outer axes)."""
        inner = ".".join(map(str, self.block.index))
        return ".".join(map(str, self.outer)) + "/" + inner if self.outer else inner


def make_layout(axes: str, shape: Sequence[int], in_channels: int, out_channels: int, spatial_dims: int) -> Layout:
    """Check that a model fits an image of canonical ``axes``/``shape`` and describe the axes roles."""
    shape = tuple(int(n) for n in shape)
    spatial = "ZYX" if spatial_dims == 3 else "YX"
    if spatial_dims == 3 and "Z" not in axes:
        raise InputError(
            f"the model is 3D but the image (axes {axes!r}) has no Z axis: expected a volume with Z, Y and X; "
            "use a 2D model, or pass axes that name the Z axis (e.g. axes='ZYX')"
        )
    channels = shape[axes.index("C")] if "C" in axes else 1
    if channels == in_channels:
        to_model = "C" in axes
    elif in_channels == 1:
        to_model = False
        if out_channels != 1:
            raise InputError(
                f"the model maps 1 channel to {out_channels}, so it cannot run channel by channel over the image's "
                f"{channels} channels; use a model with {channels} input channels or split the channels first"
            )
    else:
        where = f"{channels} channels (axis C)" if "C" in axes else "no C axis (1 channel)"
        raise InputError(
            f"the image has {where} but the model expects {in_channels} input channels: expected {in_channels} "
            "channels, or a 1-channel model (run channel by channel); pass axes naming the channel axis, or "
            "choose a checkpoint trained on this number of channels"
        )
    if "C" not in axes and out_channels != 1:
        raise InputError(
            f"the model makes {out_channels} output channels from an image without a C axis; "
            "add a channel axis to the input (axes with C) or use a model with one output channel"
        )
    return Layout(axes, shape, spatial, to_model, out_channels if to_model else 1)


def output_blocks(layout: Layout, blocks: Sequence[Block]) -> list[OutputBlock]:
    """All units of work, outer positions first (a 2D model finishes slice 0 before slice 1)."""
    return [OutputBlock(o, b) for o in layout.outer_positions() for b in blocks]


def read_region(data: Any, layout: Layout, item: OutputBlock) -> np.ndarray:
    """The block's read region ``(channels, *spatial)`` from the canonical (TCZYX-ordered) input array."""
    region = data[layout.index(item.outer, item.block.read)]
    if hasattr(region, "compute"):
        region = region.compute(scheduler="synchronous")
    region = np.asarray(region)
    return region if layout.channels_to_model else region[np.newaxis]


def place(layout: Layout, values: np.ndarray) -> np.ndarray:
    """A block's model output ``(channels, *spatial)`` shaped for ``output[layout.index(...)]``."""
    return values if layout.channels_to_model else values[0]
