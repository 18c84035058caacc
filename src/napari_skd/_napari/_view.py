"""Viewer helpers: contrast limits, the camera and grid across napari versions, and a labelled side-by-side view."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def display_limits(data) -> tuple[float, float] | None:
    """0.5-99.5 percentile contrast limits of an in-memory array (None for lazy data: napari decides)."""
    arr = np.asarray(data) if not hasattr(data, "dask") else None
    if arr is None or arr.size == 0:
        return None
    lo, hi = np.percentile(arr, (0.5, 99.5))
    return (float(lo), float(hi) if hi > lo else float(lo) + 1.0)


def camera(viewer):
    """The camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def grid(viewer):
    """The grid settings (``viewer.canvas.grid`` since napari 0.9, ``viewer.grid`` before)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def side_by_side(viewer, prefix: str, limits: Sequence[float], own_contrast: Sequence[str] = ()) -> None:
    """Show only the layers named ``prefix...``, one per grid panel, each labelled with its name, on one contrast
    (``limits``) except the layers in ``own_contrast``."""
    for layer in viewer.layers:
        layer.visible = layer.name.startswith(prefix)
        if layer.visible and layer.name not in own_contrast:
            layer.contrast_limits = limits
        if hasattr(layer, "name_overlay"):  # napari >= 0.6: the layer's name in its grid panel
            layer.name_overlay.visible = layer.visible
    grid(viewer).enabled = True
    shown = [layer for layer in viewer.layers if layer.visible]
    if hasattr(viewer, "fit_to_view"):  # napari >= 0.7: zoom to the compared layers, not to the hidden whole image
        viewer.fit_to_view(layers=shown)
