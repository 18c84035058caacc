"""The OME-Zarr output target: a store written block by block as blocks finish, resumable after any stop.

:meth:`ZarrTarget.inspect` applies the rules of ``record.judge`` before anything is created; :meth:`~ZarrTarget.open`
takes the writer lock (``lock.py``), checks again, then creates the OME-Zarr and only then its record (so a store
without a record is never taken for a resumable one), or resumes a partial output of the same job after removing the
temporary files a killed write left. While the lock is held, blocks are written and recorded (``write``; ``written``
when a dask worker wrote it), each followed by the pyramid levels it touches, so a viewer zoomed out sees the output
fill in; ``finish`` adds any levels still missing and marks the output complete. A block is recorded only after its
chunk and levels are written. Readers use :func:`read_output` and :func:`open_output_array`, never the layout.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr

from ...errors import InputError
from ...io import open_image
from ...io.pyramid import update_pyramid
from ...io.writers import (
    build_pyramid,
    clear_store,
    create_ome_zarr,
    open_level,
    owned_store,
    pyramid_arrays,
    store_attributes,
)
from ..layout import OutputBlock
from ..prepare import PreparedRestore
from .base import Target, write_block
from .lock import LOCK_NAME, WriterLock
from .record import KEY, Verdict, complete_for, decode_done, encode_done, fingerprint, foreign, judge, new_record


class ZarrTarget(Target):
    """An OME-Zarr output store; once open, under its writer lock: level 0, the record and the finished blocks."""

    held_in_memory = False

    @classmethod
    def judge_path(cls, path: Path, job: PreparedRestore, overwrite: bool, qc: bool, distributed: bool) -> Verdict:
        description = job.description()
        if qc and not overwrite and complete_for(read_record(path), description):
            return "add-qc"  # finished before: only the check runs
        return _verdict(path, description, overwrite)  # before creating anything in someone's folder

    @classmethod
    def record_at(cls, path: Path) -> dict[str, Any] | None:
        return read_record(path)

    @classmethod
    def qc_at(cls, path: Path) -> Any:
        return (store_attributes(path) or {}).get("qc")

    @contextlib.contextmanager
    def open(self) -> Iterator[ZarrTarget]:
        """Create ``path`` (or clear it, with ``overwrite``) or resume it, or reopen a finished output to add its QC
        report; yields the target while holding the store's writer lock."""
        if self.check_only:
            with WriterLock(self.path).held():
                record = read_record(self.path)
                if record is None or record.get("fingerprint") != fingerprint(self.job.description()):
                    raise InputError(f"the output {self.path} changed while it was being opened; rerun the job")
                group = zarr.open_group(str(self.path), mode="r+")
                self._attach(group, open_level(self.path, mode="r"), record)
                self.complete = True
                yield self
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"cannot write the output {self.path}: {err}; choose a folder you can write to") from err
        with WriterLock(self.path).held():
            verdict = _verdict(self.path, self.job.description(), self.overwrite)  # again, now as the only writer
            if verdict == "clear":
                clear_store(self.path, keep=(LOCK_NAME,))
            if verdict == "resume":
                remove_partial_files(self.path)
                group = zarr.open_group(str(self.path), mode="r+")
                self._attach(group, open_level(self.path), read_record(self.path))
            else:
                self._create()
            yield self

    def _create(self) -> None:
        job, c = self.job, self.job.canonical
        array = create_ome_zarr(
            self.path,
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
        group = zarr.open_group(str(self.path), mode="r+")
        record = new_record(job.description(), len(job.items), c.intensity_unit)
        group.attrs[KEY] = record
        self._attach(group, array, record)

    def _attach(self, group: Any, array: Any, record: dict[str, Any]) -> None:
        self._group, self.array, self.record = group, array, record
        self.layout = self.job.layout
        self._ordinal = {item.key: i for i, item in enumerate(self.job.items)}
        self.done = decode_done(record.get("done", ""), record["blocks"])
        self._lock = threading.Lock()
        self._pyramid_lock = threading.Lock()
        self._levels = pyramid_arrays(group)[1:]  # the arrays of levels 1, 2, ... (written with level 0)
        self._axes = self.layout.axes  # the store's axes: it was created from this layout
        self._wanted = self.job.options.levels_for(array.shape, self._axes)

    @property
    def done_count(self) -> int:
        return sum(self.done)

    def pending(self, items: list[OutputBlock]) -> list[OutputBlock]:
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
        self.complete = True

    def set_qc(self, report: dict[str, Any]) -> None:
        """Record a fidelity report (``qc``) beside the restoration record."""
        with self._lock:
            self._group.attrs["qc"] = report

    def _write(self, **changes: Any) -> None:
        self.record = {**self.record, **changes}
        self._group.attrs[KEY] = self.record


def _verdict(output: Path, job: dict[str, Any], overwrite: bool) -> Verdict:
    """``"new"``, ``"resume"`` or ``"clear"`` (overwrite what is there), or an InputError saying why not."""
    if not output.exists():
        return "new"
    if not output.is_dir():
        raise InputError(foreign(output, "is a file"))
    if not [p for p in output.iterdir() if p.name != LOCK_NAME]:
        return "new"  # an empty folder (perhaps holding a dead writer's lock)
    return judge(output, read_record(output), owned_store(output), job, overwrite)


def read_record(path: Path) -> dict[str, Any] | None:
    """The restoration record of an existing store, or None when ``path`` holds no store written by restore."""
    record = (store_attributes(path) or {}).get(KEY)
    return record if isinstance(record, dict) and "fingerprint" in record else None


def remove_partial_files(store: Path) -> int:
    """Delete the temporary ``*.partial`` files a killed zarr write leaves behind (zarr writes via rename)."""
    count = 0
    for root, _, files in os.walk(store):
        for name in files:
            if name.endswith(".partial"):
                Path(root, name).unlink(missing_ok=True)
                count += 1
    return count


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
