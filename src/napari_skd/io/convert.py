"""Convert any readable image (TIFF, NIfTI, DICOM, zarr, arrays) to an OME-Zarr store, block by block."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dask.array as da

from ..errors import InputError
from .pyramid import resolve_levels
from .readers import open_image
from .writers import OWNER_KEY, build_pyramid, clear_store, create_ome_zarr, is_zarr_name, owned_store


def to_ome_zarr(
    source: Any,
    output: str | os.PathLike,
    *,
    axes: str | None = None,
    chunks: int = 256,
    overwrite: bool = False,
    pyramid_levels: int | str = "auto",
) -> Path:
    """Write ``source`` as OME-Zarr (NGFF 0.5, axes in TCZYX order, voxel size and units kept) and return the path.

    Spatial chunks are ``chunks`` voxels a side (one plane or time point deep for non-spatial axes); memory stays
    bounded by a few chunks whatever the image size. ``pyramid_levels`` 2x levels follow, for viewers: by default
    (``"auto"``) until the smallest fits {FIT_PX} px in Y and X.
    """
    image = open_image(source, axes).to_canonical()
    try:  # checked before anything is written
        levels = resolve_levels(pyramid_levels, image.shape, image.axes)
    except ValueError as err:
        raise InputError(str(err)) from None
    out = Path(output)
    if not is_zarr_name(out):
        raise InputError(
            f"the output {out} does not name an OME-Zarr store: convert writes OME-Zarr; give a name ending "
            f".ome.zarr or .zarr (e.g. {out.with_suffix('').name}.ome.zarr)"
        )
    if image.source != "<array>" and Path(image.source).resolve() == out.resolve():
        raise InputError(f"the output {out} is the input itself; choose another output")
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):  # an empty folder is free to use
        if not out.is_dir() or not owned_store(out):
            raise InputError(
                f"the output {out} exists and was not written by napari-skd: napari-skd never replaces or deletes "
                "what it did not write, even with overwrite; choose another output path"
            )
        if not overwrite:
            raise InputError(f"{out} already exists; choose another output or pass overwrite to replace it")
        clear_store(out)
    if chunks < 1:
        raise InputError(f"chunks must be a positive number of voxels, got {chunks}")
    block = tuple(min(chunks, n) if a in "ZYX" else 1 for a, n in zip(image.axes, image.shape, strict=True))
    array = create_ome_zarr(
        out, shape=image.shape, dtype=image.data.dtype, chunks=block, axes=image.axes, scale=image.scale,
        units=image.units, translation=image.translation, name=image.name, channels=image.channels,
        attributes={OWNER_KEY: {"writer": "convert", "source": image.source}},
    )  # fmt: skip
    da.store(image.data.rechunk(block), array, lock=False)
    if levels:
        build_pyramid(out, levels)
    return out
