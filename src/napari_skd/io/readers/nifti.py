"""NIfTI (.nii, .nii.gz) through nibabel's array proxy, with voxel sizes, the origin as translation and the affine
kept (not applied: the voxel grid stays as stored)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import InputError
from .image import UNITS, RawImage
from .lazy import lazy_array
from .optional import require


def read_nifti(path: Path) -> RawImage:
    """NIfTI via nibabel's array proxy; axes ZYX (TZYX) from nibabel's X, Y, Z (, T).

    The affine's origin (world position of voxel 0) becomes the translation, and the whole affine is kept for a
    NIfTI output; rotations and flips are not applied to the voxel grid.
    """
    nib = require("nibabel", "reading NIfTI files")  # optional dependency (medical extra): imported on use
    try:
        img = nib.load(str(path))
        proxy = img.dataobj
        zooms = [float(z) for z in img.header.get_zooms()]
        affine = np.asarray(img.affine, dtype=np.float64)
        unit = img.header.get_xyzt_units()[0]
    except Exception as err:
        raise InputError(f"cannot read the NIfTI file {path}: {err}; expected a valid .nii or .nii.gz file") from err
    shape = tuple(proxy.shape)
    if not 2 <= len(shape) <= 4:
        raise InputError(f"the NIfTI file {path} has {len(shape)} dimensions {shape}: expected 2-D, 3-D or 4-D")
    # gzip cannot seek: read a compressed volume whole, slab an uncompressed one (~32 MiB per chunk).
    plane = shape[0] * shape[1] * proxy.dtype.itemsize
    depth = shape[2] if path.name.lower().endswith(".gz") or len(shape) < 3 else max(1, 2**25 // plane)
    chunks = shape[:2] + (min(depth, shape[2]),) * (len(shape) > 2) + (1,) * (len(shape) > 3)
    scaled = getattr(proxy, "slope", 1.0) != 1.0 or getattr(proxy, "inter", 0.0) != 0.0
    data = lazy_array(proxy, chunks, path, "nifti", np.float32 if scaled else None)
    n = min(len(shape), 3)
    unit = UNITS.get(unit, "millimeter")  # NIfTI spatial units default to millimetres
    return RawImage(
        data.transpose(tuple(range(len(shape)))[::-1]),
        "TZYX"[-len(shape) :],
        {len(shape) - 1 - i: zooms[i] for i in range(n)},
        {len(shape) - 1 - i: unit for i in range(n)},
        {len(shape) - 1 - i: float(affine[i, 3]) for i in range(n)},
        affine=affine if np.isfinite(affine).all() else None,
    )
