"""Viewer helpers: contrast limits, the camera and grid across napari versions, and a labelled side-by-side view
whose panels are laid out to fill the canvas, each image starting at its panel's top-left corner under its label."""

from __future__ import annotations

import math
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


def side_by_side(viewer, names: Sequence[str], limits: Sequence[float], own_contrast: Sequence[str] = ()) -> None:
    """Show only the layers ``names``, in this order, one per grid panel, each labelled with its name, on one
    contrast (``limits``) except the layers in ``own_contrast``."""
    for name in names:  # the grid fills its panels in layer-list order
        viewer.layers.move(viewer.layers.index(name), len(viewer.layers))
    for layer in viewer.layers:
        layer.visible = layer.name in names
        if layer.visible and layer.name not in own_contrast:
            layer.contrast_limits = limits
        if hasattr(layer, "name_overlay"):  # napari >= 0.6: the layer's name in its grid panel
            layer.name_overlay.visible = layer.visible
            layer.name_overlay.box = True  # readable over the image it sits on
    grid(viewer).enabled = True
    fit_panels(viewer, [viewer.layers[name] for name in names])


#: Canvas pixels between a panel's edge and its image.
MARGIN = 6


def panel_layout(canvas: Sequence[float], size: Sequence[float], n: int) -> tuple[tuple[int, int], float]:
    """The grid shape (rows, columns) that shows ``n`` images of world size ``size`` (height, width) largest on a
    canvas of ``canvas`` pixels (height, width), and that zoom (canvas pixels per world unit)."""
    best = ((1, n), 0.0)
    for rows in range(1, n + 1):
        cols = math.ceil(n / rows)
        zoom = min((canvas[0] / rows - 2 * MARGIN) / size[0], (canvas[1] / cols - 2 * MARGIN) / size[1])
        if zoom > best[1]:
            best = ((rows, cols), zoom)
    return best


def fit_panels(viewer, layers: Sequence) -> None:
    """Lay the grid out for ``layers`` (2D images of one extent) and place the camera so that each image starts
    ``MARGIN`` pixels inside its panel's top-left corner, where the panel's name label sits."""
    first = layers[0]
    scale, translate = np.asarray(first.scale[-2:], float), np.asarray(first.translate[-2:], float)
    corner = translate - scale / 2  # pixel-centred: the image's top-left edge in world units
    size = np.asarray(first.data.shape[-2:]) * scale
    canvas = getattr(viewer, "canvas", None)  # napari >= 0.9
    canvas_size = np.asarray(canvas.size if canvas is not None else viewer._canvas_size, float)  # (height, width)
    shape, zoom = panel_layout(canvas_size, size, len(layers))
    grid(viewer).shape = shape
    if zoom <= 0:  # no canvas yet (never shown): napari's own fit
        viewer.reset_view()
        return
    if canvas is not None:  # the panel's pixels, less the grid's spacing
        panel = np.asarray(canvas.viewbox_size(viewer.layers), float)
    else:
        panel = canvas_size / np.asarray(shape)
    cam = camera(viewer)
    cam.zoom = zoom
    cam.center = (*cam.center[:-2], *(corner + (panel / 2 - MARGIN) / zoom))
