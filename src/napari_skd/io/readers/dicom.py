"""DICOM files and single-series folders as a lazy (Z)YX stack: slice order, pixel spacing, CT in HU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np

from ...errors import InputError
from .image import RawImage
from .optional import require
from .sources import is_dicom


def read_dicom(path: Path) -> RawImage:
    """A DICOM series (folder) or file: slices sorted along the slice normal, then by InstanceNumber; CT in HU."""
    pydicom = require("pydicom", "reading DICOM files")  # optional dependency (medical extra): imported on use
    files = sorted(p for p in path.iterdir() if p.is_file() and is_dicom(p)) if path.is_dir() else [path]
    headers = []
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, force=f.suffix.lower() == ".dcm")
        except Exception as err:
            raise InputError(
                f"cannot read the DICOM file {f}: {err}; remove it from the folder or re-export it"
            ) from err
        if "Rows" in ds:  # skip non-image objects (reports, presentation states)
            headers.append((f, ds))
    try:
        return _series(path, headers)
    except InputError:
        raise
    except Exception as err:  # pydicom decodes elements when first used: a damaged header fails only here
        raise InputError(
            f"the DICOM header of {path} is damaged ({type(err).__name__}: {err}); expected readable Rows, Columns, "
            "PixelSpacing and position values; remove the damaged file from the series or re-export it"
        ) from err


def _series(path: Path, headers: list[tuple[Path, Any]]) -> RawImage:
    """The series of ``headers`` (file, dataset without pixels) as a lazy (Z)YX stack."""
    if not headers:
        raise InputError(f"no DICOM images in {path}: expected files holding pixel data (Rows, Columns, PixelData)")
    series = {str(ds.get("SeriesInstanceUID", "")) for _, ds in headers}
    if len(series) > 1:
        raise InputError(f"{path} holds {len(series)} DICOM series: expected one; move each series into its own folder")
    first = headers[0][1]
    if int(first.get("NumberOfFrames", 1) or 1) > 1 or int(first.get("SamplesPerPixel", 1)) != 1:
        raise InputError(
            f"{path} holds multi-frame or colour DICOM images, which are not supported: expected single-frame "
            "grayscale slices; convert the series to NIfTI or TIFF"
        )
    rows, cols = int(first.Rows), int(first.Columns)
    if any((int(ds.Rows), int(ds.Columns)) != (rows, cols) for _, ds in headers):
        raise InputError(f"the DICOM slices in {path} differ in size: expected one size for the whole series")

    row, col, normal = np.eye(3)
    if "ImageOrientationPatient" in first:
        o = np.array([float(v) for v in first.ImageOrientationPatient])
        row, col, normal = o[:3], o[3:], np.cross(o[:3], o[3:])

    def position(ds: Any) -> float:
        return float(np.dot([float(v) for v in ds.ImagePositionPatient], normal)) if "ImagePositionPatient" in ds else 0

    headers.sort(key=lambda h: (position(h[1]), int(h[1].get("InstanceNumber", 0) or 0)))
    rescaled = any("RescaleSlope" in ds or "RescaleIntercept" in ds for _, ds in headers)
    bits, signed = int(first.get("BitsAllocated", 16)), bool(first.get("PixelRepresentation", 0))
    if rescaled or bits not in (8, 16, 32):
        dtype = np.dtype(np.float32)
    else:
        dtype = np.dtype(f"{'i' if signed else 'u'}{bits // 8}")
    read = dask.delayed(_pixels, pure=True)
    slices = [da.from_delayed(read(str(f), dtype, dask_key_name=_key(Path(f), dtype)), (rows, cols), dtype)
              for f, _ in headers]  # fmt: skip
    ndim = 3 if len(slices) > 1 else 2

    scale: dict[int, float] = {}
    if "PixelSpacing" in first:
        scale[ndim - 2], scale[ndim - 1] = (float(v) for v in first.PixelSpacing)
    if ndim == 3:
        step = float(np.median(np.diff([position(ds) for _, ds in headers])))
        if "ImagePositionPatient" in first and step > 0:
            scale[0] = step
        elif first.get("SliceThickness"):
            scale[0] = float(first.SliceThickness)
    translation: dict[int, float] = {}
    if "ImagePositionPatient" in headers[0][1]:  # the first voxel's centre in patient mm, along the image's axes
        origin = np.array([float(v) for v in headers[0][1].ImagePositionPatient])
        translation = {ndim - 1: float(origin @ row), ndim - 2: float(origin @ col)}
        if ndim == 3:
            translation[0] = float(origin @ normal)
    unit = first.get("RescaleType") or ("HU" if first.get("Modality") == "CT" and rescaled else None)
    data = da.stack(slices) if ndim == 3 else slices[0]
    return RawImage(data, "ZYX"[-ndim:], scale, dict.fromkeys(scale, "millimeter"), translation, intensity_unit=unit)


def _key(file: Path, dtype: np.dtype) -> str:
    """A slice's dask key from the file's state (path, time, size), so it changes exactly when the file does."""
    stat = file.stat()
    return f"dicom-slice-{dask.base.tokenize(str(file.resolve()), stat.st_mtime_ns, stat.st_size, str(dtype))}"


def _pixels(file: str, dtype: np.dtype) -> np.ndarray:
    """dask task: one slice's pixels in ``dtype``, rescaled (e.g. to HU) when the file says so."""
    import pydicom  # optional dependency (medical extra); read_dicom has checked it is installed

    try:
        ds = pydicom.dcmread(file)
        pixels = ds.pixel_array
        if "RescaleSlope" in ds or "RescaleIntercept" in ds:
            slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
            pixels = pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)
        return pixels.astype(dtype, copy=False)
    except Exception as err:
        raise InputError(
            f"cannot decode the pixels of the DICOM file {file}: {err}; compressed transfer syntaxes need "
            "pylibjpeg or gdcm installed, or the file may be damaged"
        ) from err
