"""The real sample images shipped in ``sample_data/`` (see its README for sources and licences)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from .errors import InputError
from .io import open_image


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
        data = tifffile.imread(path)
        if name == "cell":
            meta.update(scale=(0.107, 0.107), units="micrometer")
    else:  # NIfTI volume or DICOM slice, through the lazy readers (which keep voxel size and HU)
        image = open_image(path, axes=s.axes)
        data = np.ascontiguousarray(image.data.compute())
        meta.update(scale=tuple(image.scale[a] for a in s.axes), units="millimeter")
        if image.intensity_unit:
            meta["intensity_unit"] = image.intensity_unit
    return data, meta
