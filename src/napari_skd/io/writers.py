"""OME-Zarr output: a zarr v3 group with OME-NGFF 0.5 metadata, level-0 array ``"0"`` and an optional pyramid.

The arrays are created first (empty chunks read as the fill value); blocks are written into level 0 afterwards, one
chunk each, by whoever restores them, and the mean-downsampled levels ``"1"``, ``"2"``, ... follow each block
(``io.pyramid.update_pyramid``) or are built once level 0 is complete (``build_pyramid``), chunk by chunk.
``open_image`` and napari read the result back (axes, scale, translation; napari every level).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..errors import InputError
from .pyramid import DOWNSAMPLE, level_chunks, level_shapes, update_pyramid

NGFF_VERSION = "0.5"
#: The root attribute that marks a store as written by napari-skd (a restore record, or ``{"writer": ...}``).
OWNER_KEY = "napari_skd"
_AXIS_TYPES = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}


def ome_multiscales(
    axes: str,
    *,
    scale: Mapping[str, float],
    units: Mapping[str, str],
    translation: Mapping[str, float],
    levels: int = 1,
    downsample: str = "YX",
    name: str = "image",
) -> dict[str, Any]:
    """The ``multiscales`` entry for ``levels`` datasets; level k is 2**k coarser along the ``downsample`` axes."""
    axes_meta = []
    for a in axes:
        entry = {"name": a.lower(), "type": _AXIS_TYPES[a]}
        if a in units:
            entry["unit"] = units[a]
        axes_meta.append(entry)
    datasets = []
    for k in range(levels):
        factor = [2**k if a in downsample else 1 for a in axes]
        s0 = [float(scale.get(a, 1.0)) for a in axes]
        t0 = [float(translation.get(a, 0.0)) for a in axes]
        datasets.append(
            {
                "path": str(k),
                "coordinateTransformations": [
                    {"type": "scale", "scale": [s * f for s, f in zip(s0, factor, strict=True)]},
                    # a mean over f voxels sits at the centre of the voxels it replaces
                    {
                        "type": "translation",
                        "translation": [t + (f - 1) / 2 * s for t, s, f in zip(t0, s0, factor, strict=True)],
                    },
                ],
            }
        )
    return {"name": name, "axes": axes_meta, "datasets": datasets}


def create_ome_zarr(
    path: str | os.PathLike,
    *,
    shape: Sequence[int],
    dtype: Any,
    chunks: Sequence[int],
    axes: str,
    scale: Mapping[str, float] | None = None,
    units: Mapping[str, str] | None = None,
    translation: Mapping[str, float] | None = None,
    name: str = "image",
    attributes: Mapping[str, Any] | None = None,
    channels: Sequence[Mapping[str, Any]] = (),
    levels: int = 0,
) -> Any:
    """Create the OME-Zarr group at ``path`` (which may exist as an empty folder) and return its level-0 array;
    ``levels`` empty pyramid levels are created beside it, for :func:`update_pyramid` to fill as blocks arrive.

    ``channels`` (``label``, ``color`` per channel, as read from an input) become the ``omero`` metadata when their
    number matches the ``C`` axis.
    """
    ome = {
        "version": NGFF_VERSION,
        "multiscales": [
            ome_multiscales(axes, scale=scale or {}, units=units or {}, translation=translation or {}, name=name)
        ],
    }
    n_channels = shape[axes.index("C")] if "C" in axes else 1
    if channels and len(channels) == n_channels:
        ome["omero"] = {"channels": [dict(c) for c in channels]}
    try:
        group = zarr.create_group(str(path), zarr_format=3, attributes={"ome": ome, **(attributes or {})})
        array = group.create_array(
            "0",
            shape=tuple(int(n) for n in shape),
            chunks=tuple(int(c) for c in chunks),
            dtype=np.dtype(dtype),
            fill_value=0,
            dimension_names=[a.lower() for a in axes],
        )
        if levels:
            add_levels(group, levels)
        return array
    except OSError as err:
        raise InputError(f"cannot write the output {path}: {err}; choose a folder you can write to") from err


def is_zarr_name(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a zarr store: ``.zarr`` / ``.ome.zarr``, or no file extension at all."""
    name = Path(path).name.lower()
    return name.endswith(".zarr") or "." not in name.lstrip(".")


def store_attributes(path: str | os.PathLike) -> dict[str, Any] | None:
    """The root attributes of a zarr v3 store at ``path``, or None when ``path`` holds none (read as text: no zarr)."""
    try:
        meta = json.loads((Path(path) / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    attributes = meta.get("attributes") if isinstance(meta, dict) else None
    return attributes if isinstance(attributes, dict) else {}


def owned_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an OME-Zarr store that napari-skd wrote (its root carries our mark)."""
    attributes = store_attributes(path)
    return attributes is not None and isinstance(attributes.get(OWNER_KEY), dict)


def clear_store(path: str | os.PathLike, keep: Sequence[str] = ()) -> None:
    """Delete the parts of a store napari-skd wrote at ``path``: ``zarr.json`` and the numbered levels.

    Only stores marked as ours may be cleared (callers check :func:`owned_store`); anything else in the folder, such
    as a user's notes or the names in ``keep``, stays.
    """
    for p in Path(path).iterdir():
        if p.name in keep:
            continue
        if p.name == "zarr.json" and p.is_file():
            p.unlink()
        elif p.name.isdigit() and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)


def open_level(path: str | os.PathLike, level: int = 0, mode: str = "r+") -> Any:
    """One resolution level of an OME-Zarr written by :func:`create_ome_zarr`."""
    return zarr.open_array(str(Path(path) / str(level)), mode=mode)


def build_pyramid(path: str | os.PathLike, levels: int, downsample: str = DOWNSAMPLE) -> int:
    """Give the OME-Zarr at ``path`` levels ``1..levels`` (2x means along ``downsample``), computed chunk by chunk
    from level 0; returns the count made (fewer when a side would shrink below 1 voxel). The ``multiscales``
    metadata then lists every level."""
    group = zarr.open_group(str(path), mode="r+")
    made = add_levels(group, levels, downsample)
    arrays = [group[str(k)] for k in range(made + 1)]
    update_pyramid(arrays, _axes(group), (slice(None),) * arrays[0].ndim, downsample)
    return made


def add_levels(group: Any, levels: int, downsample: str = DOWNSAMPLE) -> int:
    """Create the (empty) arrays of levels ``1..levels`` that ``group`` lacks and list every level in its
    ``multiscales`` metadata (chunks: :func:`level_chunks`). Returns the count of levels beyond 0 that now exist."""
    ome = dict(group.attrs["ome"])
    ms = ome["multiscales"][0]
    axes = _axes(group)
    base = group["0"]
    shapes = level_shapes(base.shape, axes, levels, downsample)
    for k, shape in enumerate(shapes, start=1):
        if not _has(group, str(k)):
            group.create_array(
                str(k),
                shape=shape,
                chunks=level_chunks(base.chunks, shape, axes, k, downsample),
                dtype=base.dtype,
                fill_value=0,
                dimension_names=[a.lower() for a in axes],
            )
    scale = {a: 1.0 for a in axes}
    translation = {a: 0.0 for a in axes}
    for t in ms["datasets"][0]["coordinateTransformations"]:
        values = t.get("scale") or t.get("translation")
        (scale if t["type"] == "scale" else translation).update(zip(axes, values, strict=True))
    units = {a["name"].upper(): a["unit"] for a in ms["axes"] if "unit" in a}
    ome["multiscales"] = [
        ome_multiscales(
            axes,
            scale=scale,
            units=units,
            translation=translation,
            levels=len(shapes) + 1,
            downsample=downsample,
            name=ms.get("name", "image"),
        )
    ]
    group.attrs["ome"] = ome
    return len(shapes)


def pyramid_arrays(group: Any) -> list[Any]:
    """The arrays of every level the ``multiscales`` metadata of ``group`` lists, level 0 first."""
    datasets = group.attrs["ome"]["multiscales"][0]["datasets"]
    return [group[d["path"]] for d in datasets]


def _has(group: Any, key: str) -> bool:
    try:  # a lookup, not a listing: listing warns about our lock file beside the arrays
        group[key]
    except KeyError:
        return False
    return True


def _axes(group: Any) -> str:
    return "".join(a["name"].upper() for a in group.attrs["ome"]["multiscales"][0]["axes"])
