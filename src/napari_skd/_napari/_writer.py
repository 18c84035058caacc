"""npe2 writer: save an image layer as OME-Zarr (NGFF 0.5) with its scale and translate."""

from __future__ import annotations

from typing import Any

import dask.array as da

from ..io import Image
from ..io.convert import to_ome_zarr
from ._layers import default_axes


def write_ome_zarr(path: str, data: Any, meta: dict) -> list[str]:
    """Write one image layer; axes follow the layer's dimensions (YX, ZYX, TZYX, or YXC for RGB)."""
    array = data[0] if meta.get("multiscale") else data
    axes = default_axes(array.ndim, bool(meta.get("rgb")))
    spatial = {a: i for i, a in enumerate(axes) if a in "ZYX"}
    scale, translate = meta.get("scale"), meta.get("translate")
    image = Image(
        data=array if isinstance(array, da.Array) else da.from_array(array, chunks="auto"),
        axes=axes,
        scale={a: float(scale[i]) for a, i in spatial.items()} if scale is not None else {},
        translation={a: float(translate[i]) for a, i in spatial.items()} if translate is not None else {},
        name=meta.get("name", "image"),
    )
    return [str(to_ome_zarr(image, path))]
