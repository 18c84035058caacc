"""Restoration jobs over many files: one validated configuration (YAML, CLI flags, Python), one output per input,
finished outputs skipped, partial ones resumed."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..errors import InputError, SkdError
from ..progress import ProgressFn


class RestoreJob(BaseModel):
    """Restore every input with one checkpoint."""

    model_config = ConfigDict(extra="forbid")

    version: int = 1
    input: list[str] = Field(..., description="Images: paths, globs or folders (TIFF, zarr/OME-Zarr, NIfTI, DICOM).")
    checkpoint: str = Field(..., description="Student or teacher checkpoint (or an official Restormer .pth).")
    output: str = Field(..., description="OME-Zarr path for one input, or a folder for several (NAME.ome.zarr each).")
    axes: str | None = Field(None, description="Axes of every input when the files do not say (e.g. ZYX).")
    tile: int | None = Field(None, ge=1, description="Largest model tile side (default: 1024 in 2D, 128 in 3D).")
    overlap: int | None = Field(None, ge=0, description="Tile overlap and block halo (default: 32 in 2D, 16 in 3D).")
    chunks: int | None = Field(None, ge=1, description="Output block = zarr chunk side (default: 2048 2D, 256 3D).")
    batch_size: int | None = Field(None, ge=1, description="Tiles per model call (default: by device).")
    window: Literal["cosine", "gaussian"] = Field("cosine", description="Blending window of overlapping tiles.")
    dtype: Literal["float32", "input"] = Field("float32", description="Output type; 'input' rounds and clips.")
    pyramid_levels: int = Field(0, ge=0, le=10, description="Extra 2x-downsampled levels written afterwards.")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps.")
    distributed: str | None = Field(None, description="Dask scheduler address, or a number of local workers.")
    overwrite: bool = Field(False, description="Replace finished outputs or outputs of other jobs.")


@dataclass
class Outcome:
    input: str
    output: Path
    status: str  # "restored", "skipped (already complete)", "stopped", "failed: <message>"
    seconds: float = 0.0  # wall time of this run (0 when skipped)
    voxels: int = 0  # output voxels


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
    from ..checkpoint import load_checkpoint
    from ..io import expand_sources
    from ..io.writers import open_level
    from .api import restore
    from .state import read_record

    job = job if isinstance(job, RestoreJob) else RestoreJob.model_validate(job)
    sources = [s for spec in job.input for s in expand_sources(spec)]
    if not sources:
        raise InputError("no input images were found")
    ckpt = load_checkpoint(job.checkpoint)
    many = len(sources) > 1
    out = Path(job.output)
    if many and out.exists() and not out.is_dir():
        raise InputError(f"{len(sources)} inputs need an output folder, but {out} is a file")
    distributed: str | int | None = job.distributed
    if isinstance(distributed, str) and distributed.isdigit():
        distributed = int(distributed)
    outcomes = []
    for source in sources:
        target = output_for(str(source), out, many)
        record = read_record(target)
        if record is not None and record.get("complete") and not job.overwrite:
            outcomes.append(Outcome(str(source), target, "skipped (already complete)"))
            continue
        t0 = time.perf_counter()
        try:
            restore(
                source, ckpt, target, axes=job.axes, tile=job.tile, overlap=job.overlap, chunks=job.chunks,
                batch_size=job.batch_size, window=job.window, dtype=job.dtype, pyramid_levels=job.pyramid_levels,
                device=job.device, distributed=distributed, overwrite=job.overwrite, progress=progress, cancel=cancel,
            )  # fmt: skip
        except SkdError as exc:
            if not many:
                raise
            outcomes.append(Outcome(str(source), target, f"failed: {exc}"))
            continue
        if cancel is not None and cancel.is_set():
            outcomes.append(Outcome(str(source), target, "stopped"))
            break
        voxels = int(np.prod(open_level(target).shape))
        outcomes.append(Outcome(str(source), target, "restored", time.perf_counter() - t0, voxels))
    return outcomes
