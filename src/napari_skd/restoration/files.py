"""Where a restoration's result goes by the output's name, and the single-file outputs: OME-TIFF and NIfTI.

``.ome.zarr`` / ``.zarr`` (or a name without extension) is an OME-Zarr store, written block by block at any size.
``.tif`` / ``.tiff`` is an OME-TIFF and ``.nii`` / ``.nii.gz`` a NIfTI file, for results that fit in memory: the
result is restored in memory, written to a temporary file beside the output and renamed, so such an output is either
absent or complete. Any other name is refused. Each file carries napari-skd's record (the job and its fingerprint):
in a private TIFF tag, or in a NIfTI header extension, so a rerun of the same job is recognised and only files
napari-skd wrote are ever replaced.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tifffile

from ..errors import InputError
from ..io import Image
from ..io.readers.optional import require
from ..io.writers import is_zarr_name
from .state import fingerprint, read_record

OutputFormat = Literal["ome-zarr", "tiff", "nifti"]
TIFF_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif")
NIFTI_SUFFIXES = (".nii.gz", ".nii")
RECORD_TAG = 65111  # a private TIFF tag: napari-skd's record as JSON
NIFTI_MARK = "napari-skd restore"  # the NIfTI header's description of files napari-skd wrote
_OME_UNITS = {"micrometer": "µm", "nanometer": "nm", "millimeter": "mm", "centimeter": "cm", "meter": "m"}


def output_format(path: str | os.PathLike) -> OutputFormat:
    """The format an output's name asks for; a name with another extension is refused."""
    name = Path(path).name.lower()
    if name.endswith(TIFF_SUFFIXES):
        return "tiff"
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if is_zarr_name(path):
        return "ome-zarr"
    raise InputError(
        f"the output {path} has an extension napari-skd does not write: expected a name ending .ome.zarr or .zarr "
        "(OME-Zarr, any size, written block by block), or .tif / .tiff (OME-TIFF) or .nii / .nii.gz (NIfTI) for "
        "results that fit in memory"
    )


def read_file_record(path: Path) -> tuple[bool, dict[str, Any] | None]:
    """``(ours, record)`` of an existing single-file output: whether napari-skd wrote it, and its record."""
    try:
        if output_format(path) == "tiff":
            with tifffile.TiffFile(path) as tif:
                tag = tif.pages.first.tags.get(RECORD_TAG)
                record = json.loads(tag.value) if tag is not None else None
        else:
            import nibabel  # optional dependency (medical extra): imported on use

            header = nibabel.load(str(path)).header
            comments = [e.get_content() for e in header.extensions if e.get_code() == 6]
            record = json.loads(comments[0]) if comments and NIFTI_MARK in str(header["descrip"]) else None
    except Exception:  # a file we cannot parse as ours is not ours
        return False, None
    ours = isinstance(record, dict) and "fingerprint" in record
    return ours, record if ours else None


def complete_for(path: Path, job: dict[str, Any]) -> bool:
    """Whether ``path`` holds a complete output of exactly this job (same fingerprint): a rerun may skip it."""
    if not path.exists():
        return False
    record = read_record(path) if output_format(path) == "ome-zarr" else read_file_record(path)[1]
    return record is not None and bool(record.get("complete")) and record.get("fingerprint") == fingerprint(job)


def check_fits(shape: tuple[int, ...], dtype: Any, fmt: OutputFormat, path: Path) -> None:
    """Refuse a single-file output larger than a quarter of the memory available now (it is held whole)."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not on Linux: assume a modest machine
        available = 8 * 2**30
    if size > available / 4:
        raise InputError(
            f"the result ({size / 2**30:.1f} GiB) is too large for a {fmt} file held in memory "
            f"({available / 2**30:.1f} GiB free): write OME-Zarr instead (a name ending .ome.zarr), which streams "
            "block by block"
        )


def write_file(path: Path, fmt: OutputFormat, data: np.ndarray, image: Image, record: dict[str, Any]) -> None:
    """Write ``data`` (in ``image``'s canonical TCZYX axes) as ``fmt`` at ``path``, atomically, with ``record``."""
    tmp = path.with_name(f".napari-skd-partial-{path.name}")  # same extension: nibabel reads the format from it
    try:
        if fmt == "tiff":
            _write_tiff(tmp, data, image, record)
        else:
            _write_nifti(tmp, data, image, record)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_tiff(path: Path, data: np.ndarray, image: Image, record: dict[str, Any]) -> None:
    metadata: dict[str, Any] = {"axes": image.axes, "Name": image.name}
    for axis in "ZYX":
        if axis in image.scale:
            metadata[f"PhysicalSize{axis}"] = float(image.scale[axis])
            unit = _OME_UNITS.get(image.units.get(axis, ""))
            if unit:
                metadata[f"PhysicalSize{axis}Unit"] = unit
    if image.translation:
        metadata["Plane"] = _plane_positions(data.shape, image)
    tag = (RECORD_TAG, "s", 0, json.dumps(record, default=str), True)
    tifffile.imwrite(path, data, ome=True, photometric="minisblack", metadata=metadata, extratags=[tag])


def _plane_positions(shape: tuple[int, ...], image: Image) -> dict[str, list]:
    """OME ``Plane`` positions of every plane (C order over the axes other than Y and X): the image's translation,
    plus each plane's Z offset, so that the output sits where the input was."""
    outer = [i for i, a in enumerate(image.axes) if a not in "YX"]
    planes = list(np.ndindex(*(shape[i] for i in outer)))
    z = image.axes.index("Z") if "Z" in image.axes else None
    positions: dict[str, list] = {}
    for axis in "XYZ":
        if axis not in image.translation:
            continue
        start, step = float(image.translation[axis]), float(image.scale.get(axis, 1.0))
        if axis == "Z" and z is not None:
            values = [start + step * plane[outer.index(z)] for plane in planes]
        else:
            values = [start] * len(planes)
        positions[f"Position{axis}"] = values
        unit = _OME_UNITS.get(image.units.get(axis, ""))
        if unit:
            positions[f"Position{axis}Unit"] = [unit] * len(planes)
    return positions


def _write_nifti(path: Path, data: np.ndarray, image: Image, record: dict[str, Any]) -> None:
    nibabel = require("nibabel", "writing NIfTI files")  # optional dependency (medical extra): imported on use

    axes = image.axes
    if "C" in axes and data.shape[axes.index("C")] > 1:
        raise InputError(
            f"a NIfTI output holds one channel, but the result has {data.shape[axes.index('C')]}: write OME-Zarr "
            "(.ome.zarr) or OME-TIFF (.tif) instead"
        )
    keep = [a for a in axes if a != "C"]
    volume = data.reshape([n for a, n in zip(axes, data.shape, strict=True) if a != "C"])
    order = [keep.index(a) for a in "XYZT" if a in keep]  # NIfTI stores X, Y, Z, T
    affine = image.affine if image.affine is not None else _affine(image)
    nifti = nibabel.Nifti1Image(np.ascontiguousarray(volume.transpose(order)), affine)
    nifti.header["descrip"] = NIFTI_MARK.encode()
    nifti.header.extensions.append(nibabel.nifti1.Nifti1Extension(6, json.dumps(record, default=str).encode()))
    nifti.header.set_xyzt_units("mm")
    nibabel.save(nifti, str(path))


def _affine(image: Image) -> np.ndarray:
    """A diagonal affine from the image's voxel size and translation (X, Y, Z), for inputs that had none."""
    affine = np.eye(4)
    for i, axis in enumerate("XYZ"):
        affine[i, i] = float(image.scale.get(axis, 1.0))
        affine[i, 3] = float(image.translation.get(axis, 0.0))
    return affine
