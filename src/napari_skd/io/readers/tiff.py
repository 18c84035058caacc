"""TIFF and OME-TIFF through ``tifffile``'s zarr store: axes, pixel sizes and damage checks, no full read."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from ...axes import AXES_LETTERS, SAMPLE
from ...errors import InputError
from .image import SPATIAL, UNITS, RawImage
from .lazy import lazy_array


def read_tiff(path: Path) -> RawImage:
    """TIFF through ``tifffile``'s zarr store (what ``tifffile.imread(path, aszarr=True)`` returns): no full read."""
    # imported on use: keeps ``import napari_skd.io`` light
    import tifffile
    import zarr

    damage, logger = _Damage(), logging.getLogger("tifffile")
    logger.addHandler(damage)
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            _check_extent(series, path)
            meta = _metadata(tif, series.axes)
            store = tif.aszarr(series=0, level=0)
        array = zarr.open(store, mode="r")
    except InputError:
        raise
    except Exception as err:  # tifffile and zarr raise many types on foreign or damaged bytes
        raise InputError(
            f"cannot read the TIFF file {path}: {err}; expected a valid TIFF; the file may be damaged or truncated"
        ) from err
    finally:
        logger.removeHandler(damage)
    if damage.messages:
        raise InputError(
            f"the TIFF file {path} is damaged or truncated ({damage.messages[0]}); re-copy or re-export it"
        )
    if not isinstance(array, zarr.Array) or tuple(array.shape) != tuple(series.shape):
        raise InputError(f"cannot read the TIFF file {path}: its first image series has no readable pixel array")
    chunks = _grow(array.shape, array.chunks, array.dtype.itemsize)
    axes = _axes(series.axes, series.keyframe.samplesperpixel)
    return RawImage(lazy_array(array, chunks, path, "tiff"), axes, *meta)


class _Damage(logging.Handler):
    """Collects the errors tifffile logs (and then works around by reading less) in the current thread."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.thread, self.messages = threading.get_ident(), []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


def _check_extent(series: Any, path: Path) -> None:
    """Refuse a file whose pixel data would end past the end of the file (a truncated copy)."""
    size = path.stat().st_size
    for page in {0: series.pages[0], 1: series.pages[-1]}.values():
        if page is None:
            continue
        ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=False) if o and n]
        if ends and max(ends) > size:
            raise InputError(
                f"the TIFF file {path} is truncated: its pixel data ends at byte {max(ends)} "
                f"but the file has {size} bytes; re-copy or re-export it"
            )


def _axes(letters: str, samples_per_pixel: int) -> str | None:
    """tifffile's axes as OME letters when unambiguous; 'Q', 'I' and others are unknown.

    tifffile's 'S' is either the colour samples of each pixel (RGB: channels, 'C') or, in a stack of grey pages
    whose metadata says 'S', CAREamics' sample axis (read as T by :func:`~napari_skd.axes.validate_axes`).
    """
    if "S" in letters and samples_per_pixel > 1:
        if "C" in letters:
            return None
        letters = letters.replace("S", "C")
    return letters if all(a in AXES_LETTERS + SAMPLE for a in letters) else None


def _metadata(tif: Any, letters: str) -> tuple[dict[int, float], dict[int, str], dict[int, float]]:
    """Pixel sizes, units and the origin (OME ``Plane`` positions of the first plane, in the pixel sizes' units) from
    OME-XML, or pixel sizes and units from ImageJ metadata (plain TIFF resolution tags are usually DPI: ignored)."""
    scale: dict[int, float] = {}
    units: dict[int, str] = {}
    origin: dict[int, float] = {}
    if tif.is_ome and tif.ome_metadata:
        try:
            pixels = next(e for e in ElementTree.fromstring(tif.ome_metadata).iter() if e.tag.endswith("Pixels"))
        except (ElementTree.ParseError, StopIteration):
            return scale, units, origin
        plane = next((e for e in pixels if e.tag.endswith("Plane")), None)
        for a in SPATIAL:
            size = pixels.get(f"PhysicalSize{a}")
            if a not in letters:
                continue
            unit = pixels.get(f"PhysicalSize{a}Unit", "µm")
            if size:
                scale[letters.index(a)] = float(size)
                units[letters.index(a)] = UNITS.get(unit, unit)
            position = plane.get(f"Position{a}") if plane is not None else None
            if position is not None and plane.get(f"Position{a}Unit", unit) == unit:  # other units: not converted
                origin[letters.index(a)] = float(position)
    elif tif.is_imagej and (tif.imagej_metadata or {}).get("unit") not in (None, "", "pixel"):
        ij, tags = tif.imagej_metadata, tif.pages.first.tags
        sizes = {"Z": ij.get("spacing")}
        for a, tag in (("Y", "YResolution"), ("X", "XResolution")):
            if tag in tags and tags[tag].value[0]:
                sizes[a] = tags[tag].value[1] / tags[tag].value[0]
        for a, size in sizes.items():
            if size and a in letters:
                scale[letters.index(a)] = float(size)
                units[letters.index(a)] = UNITS.get(ij["unit"], ij["unit"])
    return scale, units, origin


def _grow(shape: Sequence[int], native: Sequence[int], itemsize: int, limit: int = 32 * 2**20) -> tuple[int, ...]:
    """Dask chunks from storage chunks: TIFF strips/tiles are doubled along the plane up to ``limit`` bytes."""
    chunks = [int(c) for c in native]
    grown = True
    while grown:
        grown = False
        for i, c in enumerate(native):
            if c > 1 and chunks[i] < shape[i] and math.prod(chunks) * 2 * itemsize <= limit:
                chunks[i] = min(int(shape[i]), chunks[i] * 2)
                grown = True
    return tuple(chunks)
