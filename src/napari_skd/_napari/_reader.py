"""npe2 reader: NIfTI, DICOM (a .dcm file or a series folder) and OME-Zarr open as lazy image layers with their
voxel spacing (scale), origin (translate), units and channel names; an OME-Zarr with a pyramid opens as one
multiscale layer holding every level, so napari reads only the level and region on screen. TIFF is left to
napari's own reader."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import pint

from ..io import Image, open_image
from ..io.readers.sources import kind_of

LayerData = tuple[Any, dict[str, Any], str]
PathOrPaths = str | os.PathLike | Sequence[str | os.PathLike]
_HEX_COLOR = re.compile(r"#?([0-9a-fA-F]{6}|[0-9a-fA-F]{8})")


def napari_get_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list[LayerData]] | None:
    """:func:`read_layers` when napari-skd reads ``path``: a NIfTI file, a DICOM file or series folder, an OME-Zarr;
    None otherwise (a TIFF, a zarr without OME metadata, a folder without DICOM, a list of files to stack)."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if len(paths) != 1:  # a stack of files: napari-skd opens a DICOM series from its folder instead
        return None
    return read_layers if claims(Path(paths[0])) else None


def claims(path: Path) -> bool:
    """Whether napari-skd should read ``path``; looks at names, a few bytes per file and zarr metadata only."""
    try:
        kind = kind_of(path)
        return kind in ("nifti", "dicom") or (kind == "zarr" and is_ome_zarr(path))
    except OSError:  # an unreadable folder: not ours to explain
        return False


def is_ome_zarr(path: Path) -> bool:
    """Whether the zarr store at ``path`` is a group with OME ``multiscales`` metadata (NGFF 0.4 or 0.5)."""
    import zarr  # imported on use: keeps the reader's discovery light

    try:
        group = zarr.open_group(str(path), mode="r")
        attrs = group.attrs.asdict()
    except Exception:  # zarr raises many types for an array, a missing or a broken store: none is an OME group
        return False
    ome = attrs.get("ome", attrs)
    return isinstance(ome, dict) and bool(ome.get("multiscales"))


def read_layers(path: PathOrPaths) -> list[LayerData]:
    """napari layer data of each image at ``path``; a bad file raises ``InputError`` saying what is wrong."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    return [layer for p in paths for layer in image_layers(open_image(p))]


def image_layers(image: Image) -> list[LayerData]:
    """One image layer for ``image`` (axes in TCZYX order, data still lazy), or one per channel of a ``C`` axis
    (``channel_axis``, named after the channel labels); scale, translate and units follow the remaining axes."""
    rgb = _is_rgb(image)
    image = image.to_canonical()
    levels, axes = [image.data, *image.pyramid], image.axes
    if rgb:  # napari shows an RGB(A) layer with its colour samples last
        levels, axes = [da.moveaxis(d, axes.index("C"), -1) for d in levels], axes.replace("C", "") + "C"
    data = levels if len(levels) > 1 else levels[0]  # every level of an OME-Zarr: one multiscale layer
    layer_axes = axes.replace("C", "")
    units = {a: u for a, u in image.units.items() if a in layer_axes}
    meta = {
        "source": image.source,
        "axes": layer_axes,
        "units": units,
        "affine": image.affine.tolist() if image.affine is not None else None,
        "intensity_unit": image.intensity_unit,
    }
    kwargs: dict[str, Any] = {
        "name": image.name,
        "scale": tuple(float(image.scale.get(a, 1.0)) for a in layer_axes),
        "translate": tuple(float(image.translation.get(a, 0.0)) for a in layer_axes),
        "metadata": {"napari_skd": meta},
    }
    napari_units = _napari_units(layer_axes, units)
    if napari_units is not None:
        kwargs["units"] = napari_units
    if rgb:
        return [(data, {**kwargs, "rgb": True}, "image")]
    if len(levels) > 1:
        kwargs["multiscale"] = True
    if "C" not in axes:
        return [(data, {**kwargs, "colormap": "gray"}, "image")]

    channel_axis = axes.index("C")
    n = levels[0].shape[channel_axis]
    channels = image.channels if len(image.channels) == n else [{} for _ in range(n)]
    labels = [c.get("label") or f"{image.name} [{i}]" for i, c in enumerate(channels)]
    # napari splits every keyword per channel: per-channel lists keep strings and dicts from being split apart
    kwargs.update(
        channel_axis=channel_axis,
        name=labels,
        metadata=[{"napari_skd": {**meta, "channel": dict(c, index=i)}} for i, c in enumerate(channels)],
    )
    if "units" in kwargs:
        kwargs["units"] = [kwargs["units"]] * n
    colors = [_HEX_COLOR.fullmatch(c.get("color", "")) for c in channels]
    if all(colors):
        kwargs["colormap"] = [f"#{m.group(1)}" for m in colors]
    return [(data, kwargs, "image")]


def _is_rgb(image: Image) -> bool:
    """An 8-bit image with 3 or 4 unnamed colour samples stored last (what napari-skd writes for an RGB layer)."""
    return (
        image.axes.endswith("C")
        and image.data.shape[-1] in (3, 4)
        and image.data.dtype == "uint8"
        and not any(c.get("label") for c in image.channels)
    )


def _napari_units(axes: str, units: dict[str, str]) -> tuple[str | None, ...] | None:
    """Per-axis units napari understands (None: pixels), or None when no axis has one; all stay in the metadata."""
    registry = pint.get_application_registry()

    def known(unit: str | None) -> str | None:
        try:
            return unit if unit is not None and isinstance(registry.parse_units(unit), pint.Unit) else None
        except (pint.errors.PintError, ValueError, TypeError, AttributeError):
            return None

    out = tuple(known(units.get(a)) for a in axes)
    return out if any(u is not None for u in out) else None
