"""``open_image``: route a path or an array to its reader, check the pixels, resolve the axes."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from ...axes import resolve_axes
from ...errors import InputError
from .dicom import read_dicom
from .image import SPATIAL, Image, RawImage
from .nifti import read_nifti
from .sources import SUPPORTED_TEXT, is_pattern, kind_of, stem
from .tiff import read_tiff
from .zarr import from_zarr_node, read_zarr

_READERS: dict[str, Callable[[Path], RawImage]] = {
    "tiff": read_tiff,
    "zarr": read_zarr,
    "nifti": read_nifti,
    "dicom": read_dicom,
}


def open_image(source: Any, axes: str | None = None) -> Image:
    """Open a path (TIFF, zarr/OME-Zarr, NIfTI, DICOM), a numpy, dask or zarr array as a lazy :class:`Image`."""
    if isinstance(source, Image):
        raw = RawImage(
            source.data,
            source.axes,
            *(_by_position(source.axes, d) for d in (source.scale, source.units, source.translation)),
        )
        raw.intensity_unit, name, where = source.intensity_unit, source.name, source.source
        raw.affine, raw.channels, raw.pyramid = source.affine, source.channels, source.pyramid
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        raw, name, where = _read_path(path), stem(path), str(path)
    else:
        raw, name, where = _read_array(source), "image", "<array>"
    _check_pixels(raw.data, where)
    final = resolve_axes(raw.data.shape, axes, raw.axes)

    def by_letter(d: dict[int, Any]) -> dict[str, Any]:
        return {final[i]: v for i, v in sorted(d.items()) if final[i] in SPATIAL}

    return Image(
        data=raw.data,
        axes=final,
        scale=by_letter(raw.scale),
        units=by_letter(raw.units),
        translation=by_letter(raw.translation),
        intensity_unit=raw.intensity_unit,
        source=where,
        name=name,
        affine=raw.affine,
        channels=raw.channels,
        pyramid=raw.pyramid,
    )


def _read_path(path: Path) -> RawImage:
    if not path.exists():
        hint = " (for a glob pattern use expand_sources)" if is_pattern(str(path)) else ""
        raise InputError(f"file not found: {path}; check the path{hint}")
    kind = kind_of(path)
    if kind is None and path.is_dir():
        raise InputError(
            f"the folder {path} is neither a zarr store nor a DICOM series: expected a .zarr folder "
            "(zarr.json, .zarray or .zgroup inside) or a folder of DICOM files; "
            "to open each image in a plain folder, list them with expand_sources(folder)"
        )
    if kind is None:
        raise InputError(f"unsupported file type for {path}: expected {SUPPORTED_TEXT}; convert it to TIFF or OME-Zarr")
    return _READERS[kind](path)


def _read_array(source: Any) -> RawImage:
    zarr = sys.modules.get("zarr")  # a zarr object can only exist if zarr is imported
    if isinstance(source, da.Array):
        return RawImage(source)
    if isinstance(source, np.ndarray):  # dask cannot size "auto" chunks of objects: _check_pixels refuses those
        return RawImage(da.from_array(source, chunks="auto" if source.dtype.kind != "O" else -1))
    if zarr is not None and isinstance(source, (zarr.Array, zarr.Group)):
        return from_zarr_node(source, "<zarr>")
    raise InputError(
        f"cannot open an object of type {type(source).__name__}: "
        "expected a path, a numpy array, a dask array or a zarr array"
    )


def _check_pixels(data: da.Array, where: str) -> None:
    if data.dtype.kind not in "uif":
        raise InputError(
            f"the image {where} has dtype {data.dtype}, which cannot be restored: expected integer or floating-point "
            "pixels; convert to a real-valued image first (e.g. data.astype('float32'), or abs() of complex data)"
        )
    if 0 in data.shape:
        raise InputError(
            f"the image {where} of shape {tuple(data.shape)} is empty (a zero-size axis): "
            "expected at least one pixel along every axis; check the file or the selection"
        )


def _by_position(axes: str, d: dict[str, Any]) -> dict[int, Any]:
    return {axes.index(k): v for k, v in d.items() if k in axes}
