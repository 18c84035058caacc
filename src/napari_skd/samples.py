"""The real sample images shipped in ``sample_data/`` (see its README for sources and licences)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError


@dataclass(frozen=True)
class Sample:
    file: str
    axes: str
    modality: str
    description: str


SAMPLES: dict[str, Sample] = {
    "nuclei2d": Sample("nuclei2d.tif", "YX", "fluorescence microscopy", "Cell nuclei (DSB 2018), 512 x 512"),
    "cell": Sample("cell.tif", "YX", "quantitative phase microscopy", "Cell in saline, 660 x 550"),
    "mri_t1": Sample("mri_t1_mni152.nii.gz", "ZYX", "MR (T1)", "Brain MR template ICBM 2009a, 1 mm"),
    "ct_slice": Sample("ct_dicom", "YX", "CT (Hounsfield units)", "CT slice, 128 x 128, DICOM"),
}


def sample_dir() -> Path:
    """Folder holding the sample files: inside the installed package, or the repository's ``sample_data``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_sample_data", here.parents[1] / "sample_data"):
        if candidate.is_dir():
            return candidate
    raise InputError("the napari-skd sample data folder is missing; reinstall napari-skd")


def load_sample(name: str) -> tuple[np.ndarray, dict]:
    """Image and metadata (``axes``, ``scale`` in the image's units, ``units``, ``name``) of a named sample."""
    if name not in SAMPLES:
        raise InputError(f"unknown sample {name!r}; choose one of: {', '.join(SAMPLES)}")
    s = SAMPLES[name]
    path = sample_dir() / s.file
    meta: dict = {"axes": s.axes, "name": name, "modality": s.modality, "scale": None, "units": None}
    if path.suffix in (".tif", ".tiff"):
        import tifffile

        data = tifffile.imread(path)
        if name == "cell":
            meta.update(scale=(0.107, 0.107), units="micrometer")
    elif path.name.endswith(".nii.gz"):
        data, meta["scale"] = _read_nifti(path)
        meta["units"] = "millimeter"
    else:
        data, meta["scale"] = _read_dicom_slice(path)
        meta.update(units="millimeter", intensity_unit="HU")
    return data, meta


def _read_nifti(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    import nibabel as nib

    img = nib.load(path)
    data = np.asarray(img.dataobj)  # (X, Y, Z)
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    return np.ascontiguousarray(data.transpose(2, 1, 0)), zooms[::-1]


def _read_dicom_slice(folder: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    import pydicom

    ds = pydicom.dcmread(next(iter(sorted(folder.glob("*.dcm")))))
    slope = float(getattr(ds, "RescaleSlope", 1.0))
    intercept = float(getattr(ds, "RescaleIntercept", 0.0))
    data = ds.pixel_array.astype(np.float32) * slope + intercept
    dy, dx = (float(v) for v in ds.PixelSpacing)
    return data, (dy, dx)
