"""Sample-data contributions: each returns napari layer data for one image in ``sample_data/``."""

from __future__ import annotations

from ..samples import SAMPLES, load_sample


def _layer(name: str) -> list[tuple]:
    data, meta = load_sample(name)
    kwargs = {"name": name, "metadata": {"napari_skd": meta}}
    if meta["scale"] is not None:
        kwargs["scale"] = tuple(meta["scale"])
    if meta.get("units"):
        kwargs["units"] = meta["units"]
    return [(data, kwargs, "image")]


def nuclei2d() -> list[tuple]:
    return _layer("nuclei2d")


def cell() -> list[tuple]:
    return _layer("cell")


def mri_t1() -> list[tuple]:
    return _layer("mri_t1")


def ct_slice() -> list[tuple]:
    return _layer("ct_slice")


assert set(SAMPLES) == {"nuclei2d", "cell", "mri_t1", "ct_slice"}
