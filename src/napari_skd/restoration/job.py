"""Restoration jobs over many files: one validated configuration (YAML, CLI flags, Python), one output per input,
finished outputs skipped, partial ones resumed."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import ConfigDict, Field, field_validator

from ..checkpoint import load_checkpoint
from ..errors import InputError, SkdError
from ..io import expand_sources
from ..progress import ProgressFn
from .api import run_prepared
from .fidelity import FidelityReport
from .options import RestoreOptions
from .prepare import prepare
from .qc import SEED, load_qc_teacher
from .target import NIFTI_SUFFIXES, TIFF_SUFFIXES, complete_for, read_qc


class RestoreJob(RestoreOptions):
    """Restore every input with one checkpoint (the options are those of :func:`napari_skd.restore`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 1
    input: list[str] = Field(..., description="Images: paths, globs or folders (TIFF, zarr/OME-Zarr, NIfTI, DICOM).")
    checkpoint: str = Field(..., description="Student or teacher checkpoint (or an official Restormer .pth).")
    output: str = Field(..., description="OME-Zarr path for one input, or a folder for several (NAME.ome.zarr each).")
    overwrite: bool = Field(False, description="Replace finished outputs or outputs of other jobs.")

    @field_validator("input", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        values = [v] if isinstance(v, str | os.PathLike) else v  # one image need not be a list
        return [os.fspath(p) if isinstance(p, os.PathLike) else p for p in values] if isinstance(values, list) else v


Status = Literal["restored", "skipped", "stopped", "failed"]


@dataclass
class Outcome:
    """What happened to one input: its status, why (for skipped and failed), and the time and size when restored."""

    input: str
    output: Path
    status: Status
    reason: str = ""  # e.g. "already complete", or the error message of a failure
    seconds: float = 0.0  # wall time of this run (0 when skipped)
    voxels: int = 0  # output voxels
    qc: FidelityReport | None = None  # the fidelity check, when a QC teacher was given

    def describe(self) -> str:
        """One line for the user, e.g. ``restored: a.tif -> a.ome.zarr in 2.0 s (1.31 Mvoxel/s)``."""
        what = f"{self.status} ({self.reason})" if self.status == "skipped" else self.status
        what = f"{what}: {self.reason}" if self.status == "failed" else what
        speed = f" in {self.seconds:.1f} s ({self.voxels / self.seconds / 1e6:.2f} Mvoxel/s)" if self.seconds else ""
        return f"{what}: {self.input} -> {self.output}{speed}"


def output_for(source: str, output: Path, many: bool) -> Path:
    """Where one input's result goes: ``output`` itself, or ``output/<name>.ome.zarr`` for several inputs."""
    if not many:
        return output
    name = Path(source.rstrip("/")).name
    for suffix in (".ome.zarr", ".zarr", ".ome.tiff", ".ome.tif", ".tiff", ".tif", ".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return output / f"{name}.ome.zarr"


def run_restore_job(
    job: RestoreJob | dict[str, Any], *, progress: ProgressFn | None = None, cancel: threading.Event | None = None
) -> list[Outcome]:
    """Restore every input; a failing input is reported and the others still run."""
    job = job if isinstance(job, RestoreJob) else RestoreJob.of(**job)
    sources = [s for spec in job.input for s in expand_sources(spec)]
    if not sources:
        raise InputError("no input images were found")
    ckpt = load_checkpoint(job.checkpoint)
    if job.qc_teacher is not None:  # loaded once for every input
        job = job.model_copy(update={"qc_teacher": load_qc_teacher(job.qc_teacher)})
    many = len(sources) > 1
    out = Path(job.output)
    if many and out.exists() and not out.is_dir():
        raise InputError(f"{len(sources)} inputs need an output folder, but {out} is a file")
    if many and not out.is_dir() and out.name.lower().endswith(TIFF_SUFFIXES + NIFTI_SUFFIXES):
        raise InputError(
            f"{len(sources)} inputs need an output folder (one NAME.ome.zarr each), but {out} names a single file; "
            "give a folder name such as 'restored'"
        )
    outcomes = []
    for source in sources:
        target = output_for(str(source), out, many)
        t0 = time.perf_counter()
        try:
            prepared = prepare(source, ckpt, job)
            if not job.overwrite and complete_for(target, prepared.description()) and not _qc_missing(job, target):
                outcomes.append(Outcome(str(source), target, "skipped", "already complete", qc=read_qc(target)))
                continue
            run_prepared(prepared, target, job, overwrite=job.overwrite, progress=progress, cancel=cancel)
        except SkdError as exc:
            if not many:
                raise
            outcomes.append(Outcome(str(source), target, "failed", str(exc)))
            continue
        if cancel is not None and cancel.is_set():
            outcomes.append(Outcome(str(source), target, "stopped"))
            break
        voxels = int(np.prod(prepared.layout.out_shape))
        qc = read_qc(target) if job.qc_teacher is not None else None
        outcomes.append(
            Outcome(str(source), target, "restored", seconds=time.perf_counter() - t0, voxels=voxels, qc=qc)
        )
    return outcomes


def _qc_missing(job: RestoreJob, target: Path) -> bool:
    """A QC teacher was asked for and the finished output holds no check of that teacher and fraction."""
    if job.qc_teacher is None:
        return False
    report = read_qc(target)
    return report is None or not report.matches(job.qc_teacher.hash, job.qc_fraction, SEED)
