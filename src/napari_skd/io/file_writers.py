"""Single-file images: OME-TIFF and NIfTI written with a JSON record embedded, and that record read back.

The record rides in a private TIFF tag (:data:`RECORD_TAG`) or in a NIfTI header extension (code 6, a comment) of a
file whose header description is :data:`NIFTI_MARK`. What the record says, and when a file may be written or
replaced, is the output target's business (``restoration/target/single_file.py``); this module only moves bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from ..errors import InputError
from .readers.image import Image
from .readers.optional import require

RECORD_TAG = 65111  # a private TIFF tag: napari-skd's record as JSON
NIFTI_MARK = "napari-skd restore"  # the NIfTI header's description of files napari-skd wrote
_OME_UNITS = {"micrometer": "µm", "nanometer": "nm", "millimeter": "mm", "centimeter": "cm", "meter": "m"}


def read_tiff_record(path: Path) -> Any:
    """The JSON record in a TIFF's first page (:data:`RECORD_TAG`), or None when the tag is absent."""
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages.first.tags.get(RECORD_TAG)
        return json.loads(tag.value) if tag is not None else None


def read_nifti_record(path: Path) -> Any:
    """The JSON record in a NIfTI header extension of a file marked :data:`NIFTI_MARK`, or None."""
    import nibabel  # optional dependency (medical extra): imported on use

    header = nibabel.load(str(path)).header
    comments = [e.get_content() for e in header.extensions if e.get_code() == 6]
    return json.loads(comments[0]) if comments and NIFTI_MARK in str(header["descrip"]) else None


def write_ome_tiff(path: Path, data: np.ndarray, image: Image, record: dict[str, Any]) -> None:
    """Write ``data`` (in ``image``'s axes) as OME-TIFF with its voxel size, origin and ``record``."""
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


def write_nifti(path: Path, data: np.ndarray, image: Image, record: dict[str, Any]) -> None:
    """Write ``data`` (in ``image``'s axes, one channel) as NIfTI with the image's affine (or one from its voxel
    size and origin) and ``record``."""
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
