"""zarr v2/v3 arrays and groups, and OME-Zarr (NGFF 0.4/0.5) level 0 with its axes, scale and translation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask.array as da

from ...errors import InputError
from .image import RawImage
from .lazy import lazy_array


def read_zarr(path: Path) -> RawImage:
    """The zarr store at ``path``: an array, a group holding one array, or an OME-Zarr image."""
    import zarr  # imported on use: keeps ``import napari_skd.io`` light

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as err:  # zarr raises many types on missing or broken metadata
        raise InputError(
            f"cannot read the zarr store {path}: {err}; expected a zarr v2 or v3 array or group with valid "
            "metadata (.zarray/.zgroup/.zattrs or zarr.json); check that the store was written completely"
        ) from err
    return from_zarr_node(node, str(path), path)


def from_zarr_node(node: Any, where: str, path: Path | None = None) -> RawImage:
    """An opened zarr array or group (``path``: where it is stored, when it is a file store)."""
    import zarr  # imported on use: keeps ``import napari_skd.io`` light

    if isinstance(node, zarr.Array):
        chunks = getattr(node, "shards", None) or node.chunks  # read whole shards, not their inner chunks
        data = lazy_array(node, chunks, path, "zarr") if path is not None else da.from_zarr(node, chunks=chunks)
        return RawImage(data)
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
        return from_zarr_node(node[arrays[0]], f"{where}/{arrays[0]}", path and path / arrays[0])
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
    raw = from_zarr_node(array, f"{where}/{level}", path and path / level)
    raw.axes = axes or None
    raw.scale, raw.translation = dict(enumerate(scale)), dict(enumerate(translation))
    raw.units = units
    raw.channels = _channels(attrs.get("ome", attrs).get("omero"))
    return raw


def _channels(omero: Any) -> list[dict[str, Any]]:
    """The OME-Zarr ``omero`` channel names and colours (``label``, ``color``), or [] when absent or malformed."""
    channels = omero.get("channels") if isinstance(omero, dict) else None
    if not isinstance(channels, list):
        return []
    keep = ("label", "color")
    return [{k: c[k] for k in keep if isinstance(c.get(k), str)} for c in channels if isinstance(c, dict)]


def _transforms(transforms: list[dict]) -> tuple[list[float], list[float]]:
    """The (last) scale and translation vectors of an NGFF ``coordinateTransformations`` list; empty when absent."""
    scale: list[float] = []
    translation: list[float] = []
    for t in transforms:
        if t.get("type") == "scale":
            scale = [float(v) for v in t["scale"]]
        elif t.get("type") == "translation":
            translation = [float(v) for v in t["translation"]]
    return scale, translation
