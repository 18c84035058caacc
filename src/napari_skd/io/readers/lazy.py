"""Dask arrays over file-backed array-likes: named after the file's state, read errors reported for the user."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np

from ...errors import InputError


def lazy_array(array: Any, chunks: Any, path: Path, kind: str, dtype: Any = None) -> da.Array:
    """Dask array over an array-like read from ``path``, with a name that changes when the file does."""
    stat = path.stat()
    name = f"{kind}-{dask.base.tokenize(str(path.resolve()), stat.st_mtime_ns, stat.st_size, chunks)}"
    data = da.from_array(array, chunks=chunks, name=name, getitem=partial(_read_block, str(path)))
    return data if dtype is None else data.astype(dtype)


def _read_block(source: str, array: Any, index: tuple) -> np.ndarray:
    """dask getter: a block of ``array``; a damaged file surfaces as an InputError when computed."""
    try:
        return np.asarray(array[index])
    except Exception as err:
        raise InputError(
            f"cannot read pixels from {source}: {err}; the file may be damaged or truncated; re-copy or re-export it"
        ) from err
