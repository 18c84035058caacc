"""Layer pickers that follow the viewer's layer list, and lazy access to layer data."""

from __future__ import annotations

from typing import Any

import dask.array as da
from magicgui.widgets import ComboBox
from napari.layers import Image as ImageLayer

from ..axes import validate_axes
from ..io import Image

NONE = "(none)"


def image_layer_names(viewer) -> list[str]:

    return [layer.name for layer in viewer.layers if isinstance(layer, ImageLayer)] if viewer is not None else []


def layer_picker(viewer, label: str, optional: bool = False) -> ComboBox:
    """A combo box of image layers that refreshes as layers are added, removed or renamed."""

    def choices(_=None) -> list[str]:
        names = image_layer_names(viewer)
        return [NONE, *names] if optional else (names or [NONE])

    box = ComboBox(label=label, choices=choices)
    if viewer is not None:
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed, viewer.layers.events.moved):
            event.connect(lambda *_: box.reset_choices())
    return box


def layer_array(viewer, name: str) -> Any:
    """The full-resolution data of an image layer, as stored (numpy, dask or zarr: never loaded here)."""
    if name in (None, NONE) or name not in viewer.layers:
        return None
    layer = viewer.layers[name]
    return layer.data[0] if layer.multiscale else layer.data


def default_axes(ndim: int, rgb: bool = False) -> str:
    """A visible starting value for the axes field (the user confirms or edits it)."""
    if rgb:
        return "YXC"
    return {2: "YX", 3: "ZYX", 4: "TZYX", 5: "TCZYX"}.get(ndim, "")


def layer_image(viewer, name: str, axes: str):
    """A lazy ``io.Image`` of a layer carrying its scale, translate and units, so outputs keep them."""
    layer = viewer.layers[name]
    data = layer_array(viewer, name)
    axes = validate_axes(axes, data.ndim)
    spatial = {a: i for i, a in enumerate(axes) if a in "ZYX"}
    units = getattr(layer, "units", None)
    return Image(
        data=data if isinstance(data, da.Array) else da.from_array(data, chunks="auto"),
        axes=axes,
        scale={a: float(layer.scale[i]) for a, i in spatial.items()},
        translation={a: float(layer.translate[i]) for a, i in spatial.items()},
        units={a: str(units[i]) for a, i in spatial.items() if units is not None and str(units[i]) != "pixel"},
        source=f"napari layer {name!r}",
        name=name,
    )
