"""The OME-Zarr output of one restoration job, owned from creation (or resume) to completion.

``OutputStore.open(path, job, overwrite)`` decides what may happen at ``path`` (the refusal rules and the writer lock
of ``state``), creates the OME-Zarr and only then its record (so a store without a record is never taken for a
resumable one), or resumes a partial output of the same job after removing the temporary files a killed write left.
While the lock is held, blocks are written and recorded (``write``; ``written`` when a dask worker wrote it), each
followed by the pyramid levels it touches, so a viewer zoomed out sees the output fill in; ``finish`` adds any
levels still missing and marks the output complete. A block is recorded only after its chunk and levels are written.

Readers outside this module use :func:`read_output` and :func:`open_output_array`, never the store's layout.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr

from ..errors import InputError
from ..io import open_image
from ..io.pyramid import update_pyramid
from ..io.writers import build_pyramid, create_ome_zarr, open_level, pyramid_arrays
from .layout import Layout, OutputBlock, place
from .prepare import PreparedRestore
from .state import (
    KEY,
    WriterLock,
    decode_done,
    encode_done,
    fingerprint,
    locked_output,
    new_record,
    read_record,
    remove_partial_files,
)


class OutputStore:
    """An output store under its writer lock: its level-0 array, its record and the finished blocks."""

    def __init__(self, path: Path, group: Any, array: Any, record: dict[str, Any], job: PreparedRestore):
        self.path, self._group, self.array, self.record = path, group, array, record
        self.layout: Layout = job.layout
        self._ordinal = {item.key: i for i, item in enumerate(job.items)}
        self.done = decode_done(record.get("done", ""), record["blocks"])
        self._lock = threading.Lock()
        self._pyramid_lock = threading.Lock()
        self._levels = pyramid_arrays(group)[1:]  # the arrays of levels 1, 2, ... (written with level 0)
        self._axes = "".join(a["name"].upper() for a in group.attrs["ome"]["multiscales"][0]["axes"])
        self._wanted = job.options.levels_for(array.shape, self._axes)

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: Path, job: PreparedRestore, overwrite: bool) -> Iterator[OutputStore]:
        """Create ``path`` (or clear it, with ``overwrite``) or resume it; yields the store while holding its lock."""
        description = job.description()
        with locked_output(path, description, overwrite) as (status, record):
            if status == "new":
                c = job.canonical
                array = create_ome_zarr(
                    path,
                    shape=job.layout.out_shape,
                    dtype=job.options.dtype,
                    chunks=job.layout.out_chunks(job.options.chunks),
                    axes=c.axes,
                    scale=c.scale,
                    units=c.units,
                    translation=c.translation,
                    name=c.name,
                    channels=c.channels,
                    levels=job.options.levels_for(job.layout.out_shape, job.layout.axes),
                )
                group = zarr.open_group(str(path), mode="r+")
                record = new_record(description, len(job.items), c.intensity_unit)
                group.attrs[KEY] = record
            else:
                remove_partial_files(path)
                group = zarr.open_group(str(path), mode="r+")
                array = open_level(path)
            yield cls(path, group, array, record, job)

    @classmethod
    @contextlib.contextmanager
    def reopen(cls, path: Path, job: PreparedRestore) -> Iterator[OutputStore]:
        """A finished output of this same job, under its writer lock, to add to its attributes (e.g. ``qc``)."""
        lock = WriterLock(path)
        lock.acquire()
        try:
            record = read_record(path)
            if record is None or record.get("fingerprint") != fingerprint(job.description()):
                raise InputError(f"the output {path} changed while it was being opened; rerun the job")
            yield cls(path, zarr.open_group(str(path), mode="r+"), open_level(path, mode="r"), record, job)
        finally:
            lock.release()

    @property
    def done_count(self) -> int:
        return sum(self.done)

    def pending(self, items: list[OutputBlock]) -> list[OutputBlock]:
        """The blocks of ``items`` not recorded yet, in order."""
        return [item for item in items if not self.done[self._ordinal[item.key]]]

    def write(self, item: OutputBlock, values: np.ndarray) -> None:
        """Write a restored block into its chunk and the pyramid levels over it, then record it."""
        write_block(self.array, self.layout, item, values)
        self.written(item)

    def written(self, item: OutputBlock) -> None:
        """A block whose level-0 chunk is on disk (written here or by a dask worker): update the pyramid levels
        over it, then record it."""
        if self._levels:
            with self._pyramid_lock:
                index = self.layout.index(item.outer, item.block.out)
                update_pyramid([self.array, *self._levels], self._axes, index)
        self.mark_done(item.key)

    def mark_done(self, key: str) -> None:
        """Record a block whose chunk is on disk (thread-safe; written through to the store)."""
        with self._lock:
            self.done[self._ordinal[key]] = True
            self._write(done=encode_done(self.done))

    def note_run(self, run: dict[str, Any]) -> str:
        """Record how this run executes (device, batch size); a note when it differs from the previous run."""
        before = self.record.get("run")
        with self._lock:
            self._write(run=run)
        if before and before != run:
            return f" (earlier blocks ran with {before}: their last bits of rounding may differ)"
        return ""

    def finish(self) -> None:
        """Build the pyramid levels this job asks for that blocks did not fill (an output begun by an older version,
        or more levels asked on resume), then mark the output complete."""
        if self._wanted > len(self._levels):
            build_pyramid(self.path, self._wanted)
            self._group = zarr.open_group(str(self.path), mode="r+")  # holds the new multiscales
        with self._lock:
            self._write(complete=True)

    def set_qc(self, report: dict[str, Any]) -> None:
        """Record a fidelity report (``qc``) beside the restoration record."""
        with self._lock:
            self._group.attrs["qc"] = report

    def _write(self, **changes: Any) -> None:
        self.record = {**self.record, **changes}
        self._group.attrs[KEY] = self.record


def write_block(array: Any, layout: Layout, item: OutputBlock, values: np.ndarray) -> None:
    """Write one restored block into the output array (also used by dask workers, which write their own blocks)."""
    array[layout.index(item.outer, item.block.out)] = place(layout, values)


def open_output_array(path: str | Path) -> Any:
    """The writable level-0 array of an output store (for dask workers)."""
    return open_level(path)


def read_output(path: str | Path, axes: str) -> tuple[list[Any], str]:
    """The output at ``path`` lazily, every pyramid level (level 0 first; one entry without a pyramid), in the order
    of ``axes`` (letters the output lacks are skipped), and its axes. Fresh dask names, so that a viewer never shows
    chunks cached before they were written."""
    image = open_image(path)
    group = zarr.open_group(str(path), mode="r")
    order = [image.axes.index(a) for a in axes if a in image.axes]
    levels = [da.from_zarr(a, name=f"skd-{uuid.uuid4().hex}").transpose(order) for a in pyramid_arrays(group)]
    return levels, "".join(image.axes[i] for i in order)


def output_exists(path: str | Path) -> bool:
    """Whether ``path`` holds an output store with its record (created, possibly still being written)."""
    return read_record(Path(path)) is not None
