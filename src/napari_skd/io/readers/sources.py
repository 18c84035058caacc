"""Recognising sources: which reader handles a path, and the images a glob pattern, folder or list names."""

from __future__ import annotations

import glob
import logging
import os
from pathlib import Path
from typing import Any

from ...errors import InputError

log = logging.getLogger("napari_skd")

SUPPORTED_EXTENSIONS = (".tif", ".tiff", ".zarr", ".nii", ".nii.gz", ".dcm")
SUPPORTED_TEXT = ".tif/.tiff (OME-TIFF too), .zarr folders (OME-Zarr too), .nii/.nii.gz, .dcm and DICOM series folders"


def expand_sources(spec: Any) -> list[str | Any]:
    """Sources named by ``spec``: one source, a list, a glob pattern or a plain folder (its supported images)."""
    items = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    if not items:
        raise InputError("no input given: expected a path, a glob pattern such as 'data/*.tif', a folder or an array")
    out: list[str | Any] = []
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            out.append(item)
            continue
        text = os.fspath(item)
        path = Path(text)
        if not path.exists() and is_pattern(text):
            found = sorted(p for p in glob.glob(text, recursive=True) if kind_of(Path(p)))
            if not found:
                raise InputError(f"no supported images match {text!r}: expected {SUPPORTED_TEXT}; check the pattern")
            out += found
        elif not path.exists():
            raise InputError(f"file not found: {text}; check the path")
        elif path.is_dir() and kind_of(path) is None:
            found, skipped = folder_images(path)
            if not found:
                raise InputError(f"folder {text} holds no supported images: expected {SUPPORTED_TEXT}")
            if skipped:
                log.warning("%s: %d images; skipped %s; napari-skd reads %s", text, len(found), "; ".join(skipped),
                            SUPPORTED_TEXT)  # fmt: skip
            out += found
        else:
            out.append(text)
    return out


def kind_of(path: Path) -> str | None:
    """Which reader handles ``path`` (``None``: none); looks at names and at most a few bytes per file.

    A folder is a zarr store (``zarr.json``, ``.zarray`` or ``.zgroup`` inside), or a DICOM series when the images
    in it are all DICOM (other files such as notes are ignored); a folder of mixed images is neither, and
    :func:`expand_sources` expands it to its images.
    """
    name = path.name.lower()
    if path.is_dir():
        if name.endswith(".zarr") or any((path / f).exists() for f in ("zarr.json", ".zarray", ".zgroup")):
            return "zarr"
        files = [p for p in path.iterdir() if p.is_file()]
        dicom = any(is_dicom(p) for p in files)
        others = any(_file_kind(p) not in (None, "dicom") for p in files) or any(
            p.is_dir() and p.name.lower().endswith(".zarr") for p in path.iterdir()
        )
        return "dicom" if dicom and not others else None
    return _file_kind(path)


def _file_kind(path: Path) -> str | None:
    """The reader of a file by its name (or DICOM preamble)."""
    name = path.name.lower()
    if name.endswith((".tif", ".tiff")):
        return "tiff"
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    return "dicom" if path.is_file() and is_dicom(path) else None


def folder_images(folder: Path) -> tuple[list[str], list[str]]:
    """The images in a plain folder (sorted), and a note for each entry skipped, saying why."""
    found, skipped = [], []
    for p in sorted(folder.iterdir()):
        kind = kind_of(p)
        if kind is not None:
            found.append(str(p))
        elif p.is_dir():
            skipped.append(f"{p.name}/ (a folder that is neither a zarr store nor a DICOM series)")
        elif not p.name.startswith("."):
            skipped.append(f"{p.name} (not an image napari-skd reads)")
    return found, skipped


def is_dicom(path: Path) -> bool:
    """A ``.dcm`` file, or one without a known image extension that starts with the DICOM preamble."""
    name = path.name.lower()
    if name.endswith(".dcm"):
        return True
    if name == "dicomdir" or name.endswith(SUPPORTED_EXTENSIONS):
        return False
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def is_pattern(text: str) -> bool:
    """Whether ``text`` holds glob wildcards."""
    return any(c in text for c in "*?[")


def stem(path: Path) -> str:
    """The image's name: the file name without its (double) image extension."""
    name = path.name
    for ext in (".ome.tiff", ".ome.tif", ".ome.zarr", ".nii.gz", *SUPPORTED_EXTENSIONS):
        if name.lower().endswith(ext):
            return name[: -len(ext)] or name
    return name
