"""Blending overlapping tiles: a smooth window per tile, float32 sum and weight buffers, then normalisation.

The window is separable (a product of 1-D profiles) and never zero: its values are at least ``FLOOR``, so every voxel
that some tile covers gets a positive weight and the normalised result is defined everywhere.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal

import numpy as np

Window = Literal["cosine", "gaussian"]
WINDOWS: tuple[str, ...] = ("cosine", "gaussian")
FLOOR = 1e-3  # smallest window value: tile borders count a little, so no voxel is left without weight


def profile(length: int, overlap: int, kind: Window = "cosine") -> np.ndarray:
    """1-D window of ``length`` values in ``[FLOOR, 1]``.

    ``cosine``: 1 in the middle with raised-cosine ramps over ``overlap`` voxels at both ends, so two tiles that
    overlap by exactly ``overlap`` cross-fade with weights summing to 1. ``gaussian``: ``exp(-d^2 / 2 s^2)`` around
    the centre with ``s = length / 8`` (as in nnU-Net), peak 1.
    """
    i = np.arange(length, dtype=np.float64)
    if kind == "cosine":
        ramp = min(overlap, length // 2)
        w = np.ones(length)
        if ramp > 0:
            up = 0.5 - 0.5 * np.cos(np.pi * (i[:ramp] + 0.5) / ramp)
            w[:ramp], w[length - ramp :] = up, up[::-1]
    elif kind == "gaussian":
        w = np.exp(-0.5 * ((i - (length - 1) / 2) / (length / 8)) ** 2)
    else:
        raise ValueError(f"unknown window {kind!r}; choose one of {', '.join(WINDOWS)}")
    return np.maximum(w, FLOOR).astype(np.float32)


@functools.lru_cache(maxsize=16)
def window(shape: tuple[int, ...], overlap: int, kind: Window = "cosine") -> np.ndarray:
    """The separable N-D window for tiles of ``shape`` (cached: all tiles of a block share it)."""
    w = np.ones((), dtype=np.float32)
    for length in shape:
        w = np.multiply.outer(w, profile(length, overlap, kind))
    w.setflags(write=False)
    return w


class Blender:
    """Accumulates weighted tiles into a region of ``shape`` with ``channels`` channels; ``result()`` normalises."""

    def __init__(self, channels: int, shape: Sequence[int], overlap: int, kind: Window = "cosine"):
        self.sum = np.zeros((channels, *shape), dtype=np.float32)
        self.weight = np.zeros(tuple(shape), dtype=np.float32)
        self.overlap, self.kind = overlap, kind

    def add(self, where: tuple[slice, ...], values: np.ndarray) -> None:
        """Add a tile's ``values`` (channels, *tile) at ``where`` (slices of the region)."""
        w = window(tuple(values.shape[1:]), self.overlap, self.kind)
        self.sum[(slice(None), *where)] += values * w
        self.weight[where] += w

    def result(self, crop: tuple[slice, ...] | None = None) -> np.ndarray:
        """The weighted mean over tiles, optionally only inside ``crop`` (float32, channels first)."""
        crop = crop or tuple(slice(None) for _ in self.weight.shape)
        weight = self.weight[crop]
        if not np.all(weight > 0):
            raise RuntimeError("some voxels were covered by no tile; the tile plan is wrong")
        return self.sum[(slice(None), *crop)] / weight
