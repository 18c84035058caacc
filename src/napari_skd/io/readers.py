"""Lazy readers: every supported input becomes an :class:`Image` around a dask array that nothing here computes.

Readers first describe what the file says (``_Raw``: metadata keyed by dimension position, axes as stored or
``None`` when the file does not say); :func:`open_image` then checks the pixels' dtype and shape, resolves the
axes (explicit axes win, a shape is never guessed) and keys scale and units by axis letter.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import math
import os
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import dask
import dask.array as da
import numpy as np

from ..axes import canonical_order, resolve_axes
from ..errors import InputError

SUPPORTED_EXTENSIONS = (".tif", ".tiff", ".zarr", ".nii", ".nii.gz", ".dcm")
_SUPPORTED_TEXT = ".tif/.tiff (OME-TIFF too), .zarr folders (OME-Zarr too), .nii/.nii.gz, .dcm and DICOM series folders"
_SPATIAL = "ZYX"
_UNITS = {  # OME, ImageJ and NIfTI spellings -> OME-NGFF unit names
    "µm": "micrometer",
    "\u03bcm": "micrometer",
    "\\u00B5m": "micrometer",
    "um": "micrometer",
    "micron": "micrometer",
    "nm": "nanometer",
    "mm": "millimeter",
    "cm": "centimeter",
    "m": "meter",
    "meter": "meter",
}


@dataclass
class Image:
    """A lazily read image: ``data`` is a dask array whose dimensions ``axes`` names (as stored)."""

    data: da.Array
    axes: str
    scale: dict[str, float] = field(default_factory=dict)  # physical size per spatial axis; empty when unknown
    units: dict[str, str] = field(default_factory=dict)
    translation: dict[str, float] = field(default_factory=dict)
    intensity_unit: str | None = None  # e.g. "HU" for CT
    source: str = "<array>"
    name: str = "image"

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    def to_canonical(self) -> Image:
        """The same image with its dimensions (lazily) transposed into TCZYX order."""
        order = canonical_order(self.axes)
        return dataclasses.replace(self, data=self.data.transpose(order), axes="".join(self.axes[i] for i in order))


@dataclass
class _Raw:
    """What a reader found; metadata is keyed by dimension position so that explicit axes can relabel it."""

    data: da.Array
    axes: str | None = None
    scale: dict[int, float] = field(default_factory=dict)
    units: dict[int, str] = field(default_factory=dict)
    translation: dict[int, float] = field(default_factory=dict)
    intensity_unit: str | None = None


def open_image(source: Any, axes: str | None = None) -> Image:
    """Open a path (TIFF, zarr/OME-Zarr, NIfTI, DICOM), a numpy, dask or zarr array as a lazy :class:`Image`."""
    if isinstance(source, Image):
        raw = _Raw(
            source.data,
            source.axes,
            *(_by_position(source.axes, d) for d in (source.scale, source.units, source.translation)),
        )
        raw.intensity_unit, name, where = source.intensity_unit, source.name, source.source
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        raw, name, where = _read_path(path), _stem(path), str(path)
    else:
        raw, name, where = _read_array(source), "image", "<array>"
    _check_pixels(raw.data, where)
    final = resolve_axes(raw.data.shape, axes, raw.axes)

    def by_letter(d: dict[int, Any]) -> dict[str, Any]:
        return {final[i]: v for i, v in sorted(d.items()) if final[i] in _SPATIAL}

    return Image(
        data=raw.data,
        axes=final,
        scale=by_letter(raw.scale),
        units=by_letter(raw.units),
        translation=by_letter(raw.translation),
        intensity_unit=raw.intensity_unit,
        source=where,
        name=name,
    )


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
        if not path.exists() and _is_pattern(text):
            found = sorted(p for p in glob.glob(text, recursive=True) if _kind(Path(p)))
            if not found:
                raise InputError(f"no supported images match {text!r}: expected {_SUPPORTED_TEXT}; check the pattern")
            out += found
        elif not path.exists():
            raise InputError(f"file not found: {text}; check the path")
        elif path.is_dir() and _kind(path) is None:
            found = sorted(str(p) for p in path.iterdir() if _kind(p))
            if not found:
                raise InputError(f"folder {text} holds no supported images: expected {_SUPPORTED_TEXT}")
            out += found
        else:
            out.append(text)
    return out


# ---------------------------------------------------------------- arrays and checks


def _read_array(source: Any) -> _Raw:
    zarr = sys.modules.get("zarr")  # a zarr object can only exist if zarr is imported
    if isinstance(source, da.Array):
        return _Raw(source)
    if isinstance(source, np.ndarray):  # dask cannot size "auto" chunks of objects: _check_pixels refuses those
        return _Raw(da.from_array(source, chunks="auto" if source.dtype.kind != "O" else -1))
    if zarr is not None and isinstance(source, (zarr.Array, zarr.Group)):
        return _from_zarr_node(source, "<zarr>")
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


def _read_block(source: str, array: Any, index: tuple) -> np.ndarray:
    """dask getter: a block of ``array``; a damaged file surfaces as an InputError when computed."""
    try:
        return np.asarray(array[index])
    except Exception as err:
        raise InputError(
            f"cannot read pixels from {source}: {err}; the file may be damaged or truncated; re-copy or re-export it"
        ) from err


def _lazy(array: Any, chunks: Any, path: Path, kind: str, dtype: Any = None) -> da.Array:
    """Dask array over an array-like read from ``path``, with a name that changes when the file does."""
    stat = path.stat()
    name = f"{kind}-{dask.base.tokenize(str(path.resolve()), stat.st_mtime_ns, stat.st_size, chunks)}"
    data = da.from_array(array, chunks=chunks, name=name, getitem=partial(_read_block, str(path)))
    return data if dtype is None else data.astype(dtype)


# ---------------------------------------------------------------- paths


def _read_path(path: Path) -> _Raw:
    if not path.exists():
        hint = " (for a glob pattern use expand_sources)" if _is_pattern(str(path)) else ""
        raise InputError(f"file not found: {path}; check the path{hint}")
    kind = _kind(path)
    if kind is None and path.is_dir():
        raise InputError(
            f"the folder {path} is neither a zarr store nor a DICOM series: expected a .zarr folder "
            "(zarr.json, .zarray or .zgroup inside) or a folder of DICOM files; "
            "to open each image in a plain folder, list them with expand_sources(folder)"
        )
    if kind is None:
        raise InputError(
            f"unsupported file type for {path}: expected {_SUPPORTED_TEXT}; convert it to TIFF or OME-Zarr"
        )
    readers: dict[str, Callable[[Path], _Raw]] = {
        "tiff": _read_tiff,
        "zarr": _read_zarr,
        "nifti": _read_nifti,
        "dicom": _read_dicom,
    }
    return readers[kind](path)


def _kind(path: Path) -> str | None:
    """Which reader handles ``path`` (``None``: none); looks at names and at most a few bytes per file."""
    name = path.name.lower()
    if path.is_dir():
        if name.endswith(".zarr") or any((path / f).exists() for f in ("zarr.json", ".zarray", ".zgroup")):
            return "zarr"
        return "dicom" if any(p.is_file() and _is_dicom(p) for p in path.iterdir()) else None
    if name.endswith((".tif", ".tiff")):
        return "tiff"
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    return "dicom" if path.is_file() and _is_dicom(path) else None


def _is_dicom(path: Path) -> bool:
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


def _is_pattern(text: str) -> bool:
    return any(c in text for c in "*?[")


def _stem(path: Path) -> str:
    name = path.name
    for ext in (".ome.tiff", ".ome.tif", ".ome.zarr", ".nii.gz", *SUPPORTED_EXTENSIONS):
        if name.lower().endswith(ext):
            return name[: -len(ext)] or name
    return name


def _require(module: str, what: str) -> Any:
    try:
        return __import__(module)
    except ImportError as err:
        raise InputError(
            f"reading {what} needs the {module} package, which is not installed; "
            "install napari-skd[medical] (pip install 'napari-skd[medical]')"
        ) from err


# ---------------------------------------------------------------- TIFF


class _Damage(logging.Handler):
    """Collects the errors tifffile logs (and then works around by reading less) in the current thread."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.thread, self.messages = threading.get_ident(), []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


def _read_tiff(path: Path) -> _Raw:
    """TIFF through ``tifffile``'s zarr store (what ``tifffile.imread(path, aszarr=True)`` returns): no full read."""
    import tifffile
    import zarr

    damage, logger = _Damage(), logging.getLogger("tifffile")
    logger.addHandler(damage)
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            _check_extent(series, path)
            meta = _tiff_metadata(tif, series.axes)
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
    return _Raw(_lazy(array, chunks, path, "tiff"), _tiff_axes(series.axes), *meta)


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


def _tiff_axes(letters: str) -> str | None:
    """tifffile's axes as OME letters when unambiguous: samples 'S' become 'C'; 'Q', 'I' and others are unknown."""
    axes = letters.replace("S", "C") if "C" not in letters else letters
    return axes if all(a in "TCZYX" for a in axes) else None


def _tiff_metadata(tif: Any, letters: str) -> tuple[dict[int, float], dict[int, str]]:
    """Pixel sizes and units from OME-XML or ImageJ metadata (plain TIFF resolution tags are usually DPI: ignored)."""
    scale: dict[int, float] = {}
    units: dict[int, str] = {}
    if tif.is_ome and tif.ome_metadata:
        try:
            pixels = next(e for e in ElementTree.fromstring(tif.ome_metadata).iter() if e.tag.endswith("Pixels"))
        except (ElementTree.ParseError, StopIteration):
            return scale, units
        for a in _SPATIAL:
            size = pixels.get(f"PhysicalSize{a}")
            if size and a in letters:
                scale[letters.index(a)] = float(size)
                unit = pixels.get(f"PhysicalSize{a}Unit", "µm")
                units[letters.index(a)] = _UNITS.get(unit, unit)
    elif tif.is_imagej and (tif.imagej_metadata or {}).get("unit") not in (None, "", "pixel"):
        ij, tags = tif.imagej_metadata, tif.pages.first.tags
        sizes = {"Z": ij.get("spacing")}
        for a, tag in (("Y", "YResolution"), ("X", "XResolution")):
            if tag in tags and tags[tag].value[0]:
                sizes[a] = tags[tag].value[1] / tags[tag].value[0]
        for a, size in sizes.items():
            if size and a in letters:
                scale[letters.index(a)] = float(size)
                units[letters.index(a)] = _UNITS.get(ij["unit"], ij["unit"])
    return scale, units


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


# ---------------------------------------------------------------- zarr / OME-Zarr


def _read_zarr(path: Path) -> _Raw:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as err:  # zarr raises many types on missing or broken metadata
        raise InputError(
            f"cannot read the zarr store {path}: {err}; expected a zarr v2 or v3 array or group with valid "
            "metadata (.zarray/.zgroup/.zattrs or zarr.json); check that the store was written completely"
        ) from err
    return _from_zarr_node(node, str(path), path)


def _from_zarr_node(node: Any, where: str, path: Path | None = None) -> _Raw:
    import zarr

    if isinstance(node, zarr.Array):
        chunks = getattr(node, "shards", None) or node.chunks  # read whole shards, not their inner chunks
        data = _lazy(node, chunks, path, "zarr") if path is not None else da.from_zarr(node, chunks=chunks)
        return _Raw(data)
    attrs = node.attrs.asdict()
    multiscales = attrs.get("ome", attrs).get("multiscales")  # NGFF 0.5 nests its metadata under "ome"
    if not multiscales:
        arrays = sorted(node.array_keys())
        if len(arrays) != 1:
            raise InputError(
                f"the zarr group {where} holds {len(arrays)} arrays ({', '.join(arrays) or 'none'}) and no OME "
                "multiscales metadata: expected one array or an OME-Zarr; open one array, e.g. "
                f"'{where}/{arrays[0] if arrays else 'NAME'}'"
            )
        return _from_zarr_node(node[arrays[0]], f"{where}/{arrays[0]}", path and path / arrays[0])
    try:
        ms = multiscales[0]
        level = ms["datasets"][0]["path"]
        axes = "".join((a if isinstance(a, str) else a["name"]).upper() for a in ms.get("axes", []))
        units = {i: a["unit"] for i, a in enumerate(ms.get("axes", [])) if isinstance(a, dict) and a.get("unit")}
        scale, translation = _transforms(ms["datasets"][0].get("coordinateTransformations", []))
        outer_scale, _ = _transforms(ms.get("coordinateTransformations", []))
        scale = [s * o for s, o in zip(scale, outer_scale, strict=True)] if scale and outer_scale else scale
        array = node[level]
        for what, values in (("scale", scale), ("translation", translation)):
            if values and len(values) != len(array.shape):
                raise ValueError(f"{what} has {len(values)} entries for an array of {len(array.shape)} dimensions")
    except Exception as err:
        raise InputError(
            f"the OME-Zarr metadata of {where} is malformed ({type(err).__name__}: {err}): expected "
            "multiscales[0] with 'axes' and 'datasets' (NGFF 0.4 or 0.5); pass the array itself, e.g. "
            f"'{where}/0', with axes"
        ) from err
    raw = _from_zarr_node(array, f"{where}/{level}", path and path / level)
    raw.axes = axes or None
    raw.scale, raw.translation = dict(enumerate(scale)), dict(enumerate(translation))
    raw.units = units
    return raw


def _transforms(transforms: list[dict]) -> tuple[list[float], list[float]]:
    scale: list[float] = []
    translation: list[float] = []
    for t in transforms:
        if t.get("type") == "scale":
            scale = [float(v) for v in t["scale"]]
        elif t.get("type") == "translation":
            translation = [float(v) for v in t["translation"]]
    return scale, translation


# ---------------------------------------------------------------- NIfTI


def _read_nifti(path: Path) -> _Raw:
    """NIfTI via nibabel's array proxy; axes ZYX (TZYX) from nibabel's X, Y, Z (, T); the affine is not applied."""
    nib = _require("nibabel", "NIfTI files")
    try:
        img = nib.load(str(path))
        proxy = img.dataobj
        zooms = [float(z) for z in img.header.get_zooms()]
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
    data = _lazy(proxy, chunks, path, "nifti", np.float32 if scaled else None)
    n = min(len(shape), 3)
    unit = _UNITS.get(unit, "millimeter")  # NIfTI spatial units default to millimetres
    return _Raw(
        data.transpose(tuple(range(len(shape)))[::-1]),
        "TZYX"[-len(shape) :],
        {len(shape) - 1 - i: zooms[i] for i in range(n)},
        {len(shape) - 1 - i: unit for i in range(n)},
    )


# ---------------------------------------------------------------- DICOM


def _read_dicom(path: Path) -> _Raw:
    """A DICOM series (folder) or file: slices sorted along the slice normal, then by InstanceNumber; CT in HU."""
    pydicom = _require("pydicom", "DICOM files")
    files = sorted(p for p in path.iterdir() if p.is_file() and _is_dicom(p)) if path.is_dir() else [path]
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
        return _dicom_series(path, headers)
    except InputError:
        raise
    except Exception as err:  # pydicom decodes elements when first used: a damaged header fails only here
        raise InputError(
            f"the DICOM header of {path} is damaged ({type(err).__name__}: {err}); expected readable Rows, Columns, "
            "PixelSpacing and position values; remove the damaged file from the series or re-export it"
        ) from err


def _dicom_series(path: Path, headers: list[tuple[Path, Any]]) -> _Raw:
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

    normal = np.array([0.0, 0.0, 1.0])
    if "ImageOrientationPatient" in first:
        o = np.array([float(v) for v in first.ImageOrientationPatient])
        normal = np.cross(o[:3], o[3:])

    def position(ds: Any) -> float:
        return float(np.dot([float(v) for v in ds.ImagePositionPatient], normal)) if "ImagePositionPatient" in ds else 0

    headers.sort(key=lambda h: (position(h[1]), int(h[1].get("InstanceNumber", 0) or 0)))
    rescaled = any("RescaleSlope" in ds or "RescaleIntercept" in ds for _, ds in headers)
    bits, signed = int(first.get("BitsAllocated", 16)), bool(first.get("PixelRepresentation", 0))
    if rescaled or bits not in (8, 16, 32):
        dtype = np.dtype(np.float32)
    else:
        dtype = np.dtype(f"{'i' if signed else 'u'}{bits // 8}")
    read = dask.delayed(_dicom_pixels, pure=True)
    slices = [da.from_delayed(read(str(f), dtype), (rows, cols), dtype) for f, _ in headers]
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
    unit = first.get("RescaleType") or ("HU" if first.get("Modality") == "CT" and rescaled else None)
    data = da.stack(slices) if ndim == 3 else slices[0]
    return _Raw(data, "ZYX"[-ndim:], scale, dict.fromkeys(scale, "millimeter"), intensity_unit=unit)


def _dicom_pixels(file: str, dtype: np.dtype) -> np.ndarray:
    import pydicom

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
