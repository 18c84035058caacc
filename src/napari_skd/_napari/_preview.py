"""The region a preview restores (the current slice of the non-displayed axes, cropped around the camera centre)
and the quality line of its result."""

from __future__ import annotations

import numpy as np

from ..evaluation import psnr_ssim
from ..normalize import Normalization


def preview_region(
    shape: tuple[int, ...], axes: str, current: tuple[int, ...], center_yx: tuple[float, float], size: int
) -> tuple[slice | int, ...]:
    """Index of a ``size`` x ``size`` YX window (clipped to the image) at ``center_yx`` in the current slice.

    ``current`` gives the position of every axis (napari's ``dims.current_step`` in data coordinates); axes other
    than Y, X and C are fixed there, so a 2D model restores one plane of a volume or time series.
    """
    index: list[slice | int] = []
    for n, (axis, pos) in enumerate(zip(axes, current, strict=True)):
        if axis == "C":
            index.append(slice(None))
        elif axis in "YX":
            c = center_yx[0] if axis == "Y" else center_yx[1]
            half = size // 2
            start = int(np.clip(round(c) - half, 0, max(0, shape[n] - size)))
            index.append(slice(start, min(shape[n], start + size)))
        else:
            index.append(int(np.clip(pos, 0, shape[n] - 1)))
    return tuple(index)


def region_axes(axes: str, region: tuple[slice | int, ...]) -> str:
    """The axes that remain after indexing with ``region``."""
    return "".join(a for a, r in zip(axes, region, strict=True) if isinstance(r, slice))


def region_offset(region: tuple[slice | int, ...]) -> list[int]:
    """Start of every axis of ``region`` (for the preview layer's translate)."""
    return [r.start or 0 if isinstance(r, slice) else r for r in region]


def quality(reference: np.ndarray, out: np.ndarray, norm: Normalization | None, axes: str) -> str:
    """PSNR/SSIM in a checkpoint's normalised units (data range 1); ``axes`` names the arrays' dimensions."""
    channel_axis = axes.index("C") if "C" in axes else None
    ref = norm.apply(reference.astype(np.float32), channel_axis) if norm else reference.astype(np.float32)
    res = norm.apply(out.astype(np.float32), channel_axis) if norm else out.astype(np.float32)
    psnr, ssim = psnr_ssim(np.squeeze(ref), np.squeeze(res))
    return f"PSNR {psnr:.2f} dB, SSIM {ssim:.3f}"
