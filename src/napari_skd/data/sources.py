"""Training sources -> lazy volumes in the canonical layout (S, C, Z, Y, X) that the patch sampler draws from."""

from __future__ import annotations

from typing import Any

import dask.array as da

from ..errors import InputError
from ..io import expand_sources, open_image


def load_volumes(spec: Any, axes: str | None) -> list[da.Array] | None:
    """Open every image of ``spec`` (path, glob, folder, list, or arrays) lazily as (S, C, Z, Y, X) dask arrays.

    S stacks time points (and CAREamics' samples, which axes strings may name S: read as T); missing axes get
    length 1.
    """
    if spec is None:
        return None

    volumes = []
    for source in expand_sources(spec):
        image = open_image(source, axes=axes).to_canonical()
        volumes.append(canonical_5d(image.data, image.axes))
    return volumes


def canonical_5d(data: da.Array, axes: str) -> da.Array:
    """Insert length-1 axes so that ``axes`` (already in TCZYX order) becomes exactly TCZYX."""
    if "".join(a for a in "TCZYX" if a in axes) != axes:
        raise InputError(f"axes {axes!r} are not in canonical TCZYX order")
    index = tuple(slice(None) if a in axes else None for a in "TCZYX")
    return data[index]
