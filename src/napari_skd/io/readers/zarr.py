"""zarr v2/v3 arrays and groups, and OME-Zarr (NGFF 0.4/0.5): level 0 with its axes, scale and translation, and
the coarser levels (``pyramid``) lazily, for viewers.

A bioformats2raw container (``bioformats2raw.layout`` at its root, images in ``0/``, ``1/``...) opens its image
when it holds one; with several, the message names them.
"""

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
    images = None if multiscales else _container_images(node, attrs, where)
    if images is not None:  # a bioformats2raw container of one image: that image
        return from_zarr_node(node[images], f"{where}/{images}", path and path / images)
    if not multiscales:
        arrays = sorted(node.array_keys())
        if len(arrays) != 1:
            groups = sorted(node.group_keys())
            inside = f" but the group(s) {_listed(groups)}" if groups and not arrays else ""
            raise InputError(
                f"the zarr group {where} holds {len(arrays)} arrays ({', '.join(arrays) or 'none'}){inside} and no "
                "OME multiscales metadata: expected one array or an OME-Zarr; open one "
                f"{'group' if inside else 'array'}, e.g. '{where}/{(arrays or groups or ['NAME'])[0]}'"
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
    raw.pyramid = _coarser_levels(node, ms["datasets"][1:], array.shape, where, path)
    raw.axes = axes or None
    raw.scale, raw.translation = dict(enumerate(scale)), dict(enumerate(translation))
    raw.units = units
    raw.channels = _channels(attrs.get("ome", attrs).get("omero"))
    return raw


def _coarser_levels(
    node: Any, datasets: list[Any], shape: tuple[int, ...], where: str, path: Path | None
) -> list[da.Array]:
    """The lazy arrays of an OME-Zarr's levels after the first, each no larger than the one before; reading stops
    at the first level that is missing, of another dimensionality or not smaller (viewers need a shrinking list)."""
    levels: list[da.Array] = []
    for d in datasets:
        try:
            key = d["path"]
            array = node[key]
        except Exception:  # a listed level that is absent or unreadable: keep the levels before it
            break
        if len(array.shape) != len(shape) or any(n > m for n, m in zip(array.shape, shape, strict=True)):
            break
        if tuple(array.shape) == tuple(shape):
            break
        levels.append(from_zarr_node(array, f"{where}/{key}", path and path / key).data)
        shape = tuple(array.shape)
    return levels


def _container_images(node: Any, attrs: dict[str, Any], where: str) -> str | None:
    """The one image of a bioformats2raw container (None when ``node`` is not one); several are refused by name.

    The images are those the ``OME`` group's ``series`` attribute lists, else the groups ``0``, ``1``... (NGFF
    "bioformats2raw.layout").
    """
    ome = attrs.get("ome") if isinstance(attrs.get("ome"), dict) else {}
    if "bioformats2raw.layout" not in attrs and "bioformats2raw.layout" not in ome:
        return None
    groups = set(node.group_keys())
    series = None
    if "OME" in groups:
        meta = node["OME"].attrs.asdict()
        series = meta.get("series", meta.get("ome", {}).get("series") if isinstance(meta.get("ome"), dict) else None)
    if isinstance(series, list) and series and all(isinstance(s, str) for s in series):
        images = [s.strip("/") for s in series]
    else:
        images = []
        while str(len(images)) in groups:
            images.append(str(len(images)))
    missing = [i for i in images if i not in groups]
    if not images or missing:
        raise InputError(
            f"{where} is a bioformats2raw container, but its image group(s) {_listed(missing) or '0, 1, ...'} are "
            "missing: the conversion may be incomplete; convert the file again, or open an image folder inside it"
        )
    if len(images) > 1:
        raise InputError(
            f"{where} is a bioformats2raw container holding {len(images)} images ({_listed(images)}): napari-skd "
            f"opens one image at a time; open one of them, e.g. '{where}/{images[0]}'"
        )
    return images[0]


def _listed(names: list[str], most: int = 8) -> str:
    """``0, 1, 2`` or, for long lists, the first ``most`` and how many more."""
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


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
