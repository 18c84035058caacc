"""The single-file output target: an OME-TIFF or a NIfTI file, for results that fit in memory.

The result is restored into memory and written once, at the end, to a temporary file beside the output and renamed,
so such an output is either absent or complete (a stopped run, or a stopped QC check that was asked for, writes
nothing). The file embeds napari-skd's record (the job and its fingerprint, and the QC report), so a rerun of the same
job is recognised and only files napari-skd wrote are ever replaced.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError
from ...io.file_writers import read_nifti_record, read_tiff_record, write_nifti, write_ome_tiff
from ..layout import OutputBlock
from ..prepare import PreparedRestore
from .base import OutputFormat, Target, output_format, write_block
from .record import Verdict, complete_for, foreign, judge, new_record


class FileTarget(Target):
    """A TIFF or NIfTI output; once open, the result in memory until :meth:`finish` (or :meth:`set_qc`) writes it."""

    held_in_memory = True

    @classmethod
    def judge_path(cls, path: Path, job: PreparedRestore, overwrite: bool, qc: bool, distributed: bool) -> Verdict:
        fmt = output_format(path)
        if distributed:
            raise InputError(
                f"distributed restoration writes OME-Zarr (the workers write their blocks into one store), not {fmt}: "
                "name the output .ome.zarr"
            )
        check_fits(job.layout.out_shape, job.options.dtype, fmt, path)
        description = job.description()
        if path.is_dir():
            raise InputError(foreign(path, "is a folder"))
        if path.exists():
            ours, record = read_file_record(path)
            if qc and not overwrite and complete_for(record, description):
                raise InputError(
                    f"the output {path} is already complete for this same job; adding fidelity QC to a {fmt} file "
                    "rewrites it: pass overwrite=True (--overwrite) to restore it again with QC, or write OME-Zarr, "
                    "where QC can be added to a finished output"
                )
            return judge(path, record, ours, description, overwrite)  # a file is always written whole, anew
        return "new"

    @classmethod
    def record_at(cls, path: Path) -> dict[str, Any] | None:
        return read_file_record(path)[1]

    @classmethod
    def qc_at(cls, path: Path) -> Any:
        return (read_file_record(path)[1] or {}).get("qc") if path.is_file() else None

    @contextlib.contextmanager
    def open(self) -> Iterator[FileTarget]:
        """The result in memory (canonical TCZYX order), empty; the file is written by :meth:`finish`."""
        self.array = np.zeros(self.job.layout.out_shape, dtype=self.job.options.dtype)
        yield self

    def pending(self, items: list[OutputBlock]) -> list[OutputBlock]:
        return list(items)  # a file is written whole by one run: nothing to resume

    def write(self, item: OutputBlock, values: np.ndarray) -> None:
        write_block(self.array, self.job.layout, item, values)

    def note_run(self, run: dict[str, Any]) -> str:
        return ""  # one run writes the whole file: no earlier run to compare with

    def finish(self) -> None:
        """Write the file now, or, when a QC report follows, with it (:meth:`set_qc`)."""
        job = self.job
        self.record = new_record(job.description(), len(job.items), job.canonical.intensity_unit) | {"complete": True}
        if not self.expects_qc:
            self._write_file()

    def set_qc(self, report: dict[str, Any]) -> None:
        self.record["qc"] = report
        self._write_file()

    def _write_file(self) -> None:
        """Write the result with its record to a temporary file beside the output, then rename it into place."""
        path = self.path
        tmp = path.with_name(f".napari-skd-partial-{path.name}")  # same extension: nibabel reads the format from it
        try:
            write = write_ome_tiff if output_format(path) == "tiff" else write_nifti
            write(tmp, self.array, self.job.canonical, self.record)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        self.complete = True


def read_file_record(path: Path) -> tuple[bool, dict[str, Any] | None]:
    """``(ours, record)`` of an existing single-file output: whether napari-skd wrote it, and its record."""
    try:
        record = read_tiff_record(path) if output_format(path) == "tiff" else read_nifti_record(path)
    except Exception:  # a file we cannot parse as ours is not ours
        return False, None
    ours = isinstance(record, dict) and "fingerprint" in record
    return ours, record if ours else None


def check_fits(shape: tuple[int, ...], dtype: Any, fmt: OutputFormat, path: Path) -> None:
    """Refuse a single-file output larger than a quarter of the memory available now (it is held whole)."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not on Linux: assume a modest machine
        available = 8 * 2**30
    if size > available / 4:
        raise InputError(
            f"the result ({size / 2**30:.1f} GiB) is too large for a {fmt} file held in memory "
            f"({available / 2**30:.1f} GiB free): write OME-Zarr instead (a name ending .ome.zarr), which streams "
            "block by block"
        )
