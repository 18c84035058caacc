"""Output targets: where a restoration's result goes, owned from the first look at the path to the last write.

Two kinds answer the same questions (:class:`~.base.Target`): an OME-Zarr store (``zarr_store.py``: blocks written as
they finish, resumable) and a single TIFF or NIfTI file (``single_file.py``: written atomically at the end). What is
there and may this job use it (new, resume, clear with ``overwrite``, skip when complete, or refused, and why), open
or resume it, which blocks are pending, write a block, record a run, attach a QC report, finish. ``restore``,
``RestoreJob``, QC, dask workers and the Restore widget all go through this package; the low-level zarr, TIFF and
NIfTI helpers in ``io/`` are called from here and never call back.

Imports go one way: ``__init__`` -> ``zarr_store`` / ``single_file`` -> ``base``, ``record``, ``lock`` -> ``io/``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...errors import InputError
from ..fidelity import FidelityReport
from ..prepare import PreparedRestore
from .base import NIFTI_SUFFIXES, TIFF_SUFFIXES, OutputFormat, Target, output_format, write_block
from .lock import LOCK_NAME
from .record import Verdict
from .record import complete_for as _complete
from .single_file import FileTarget
from .zarr_store import ZarrTarget, open_output_array, output_exists, read_output, read_record

__all__ = [
    "LOCK_NAME",
    "NIFTI_SUFFIXES",
    "TIFF_SUFFIXES",
    "FileTarget",
    "OutputFormat",
    "Target",
    "Verdict",
    "ZarrTarget",
    "complete_for",
    "kind_of",
    "open_output_array",
    "output_exists",
    "output_format",
    "output_target",
    "read_output",
    "read_qc",
    "read_record",
    "write_block",
]


def kind_of(path: str | os.PathLike) -> type[Target]:
    """The target class an output's name asks for (an unknown extension is refused)."""
    return ZarrTarget if output_format(path) == "ome-zarr" else FileTarget


def output_target(
    output: Path, job: PreparedRestore, overwrite: bool, *, qc: bool = False, distributed: bool = False
) -> Target:
    """The target at ``output`` for ``job``, inspected but not opened; an InputError says why this job may not use
    it (the output overlaps an input, has an unknown extension, holds what napari-skd did not write, ...)."""
    check_paths(job, output)
    return kind_of(output).inspect(output, job, overwrite, qc=qc, distributed=distributed)


def check_paths(job: PreparedRestore, output: Path) -> None:
    """Refuse an output that is, contains or lies inside the input or the checkpoint (inputs are never modified)."""
    if job.ckpt.path is not None and Path(job.ckpt.path).resolve().is_relative_to(output.resolve()):
        raise InputError(
            f"the output {output} is or holds the checkpoint {job.ckpt.path}: inputs are never modified; "
            "choose another output path"
        )
    image = job.image
    if image.source == "<array>":
        return
    source = Path(image.source).resolve()
    target = output.resolve()
    if target == source or source.is_relative_to(target) or target.is_relative_to(source):
        raise InputError(
            f"the output {output} is the input {image.source} or overlaps it: inputs are never modified; "
            "choose an output path outside the input, e.g. 'restored.zarr'"
        )


def complete_for(path: Path, job: dict[str, Any]) -> bool:
    """Whether ``path`` holds a complete output of exactly this job (same fingerprint): a rerun may skip it."""
    return path.exists() and _complete(kind_of(path).record_at(path), job)


def read_qc(path: str | os.PathLike) -> FidelityReport | None:
    """The fidelity report stored with an output (OME-Zarr attributes or a file's record), or None."""
    qc = kind_of(path).qc_at(Path(path))
    return FidelityReport.from_attrs(qc) if isinstance(qc, dict) else None
