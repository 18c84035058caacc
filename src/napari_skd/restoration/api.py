"""``restore``: the entry point the GUI and CLI call to restore a whole image, tile by tile, out of core.

It validates the options, prepares the job (``prepare``), then dispatches its blocks to the local pipeline
(``runner``) or to dask workers (``distributed``), into memory or into an output target (:mod:`.target`: an
OME-Zarr store or a single TIFF or NIfTI file), which owns everything about the output path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import Checkpoint
from ..errors import InputError, write_error
from ..progress import Cancel, ProgressEvent, ProgressFn, emit
from .distributed import WorkerSpec, run_distributed, worker_spec
from .layout import OutputBlock, read_region
from .options import RestoreOptions
from .prepare import PreparedRestore, make_restorer, prepare
from .qc import check_fidelity, qc_teacher_for, stored_block
from .runner import run_local
from .target import Target, output_target, write_block


def restore(
    input: Any,
    checkpoint: Any,
    output: str | os.PathLike | None = None,
    *,
    axes: str | None = None,
    tile: int | tuple[int, ...] | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    cancel: Cancel | None = None,
    window: str = "cosine",
    chunks: int | tuple[int, ...] | None = None,
    distributed: str | int | None = None,
    dtype: str = "float32",
    pyramid_levels: int | str = "auto",
    intensities: str = "check",
    qc_teacher: Any = None,
    qc_fraction: float = 0.05,
) -> np.ndarray | Path:
    """Restore ``input`` with a checkpoint's model, block by block, so images larger than memory stream through.

    - ``input``: a path (TIFF, zarr/OME-Zarr, NIfTI, DICOM), a numpy, dask or zarr array, or an :class:`Image`;
      ``axes`` names its dimensions when the file does not (OME letters, e.g. ``"ZYX"``).
    - ``checkpoint``: a checkpoint path or a loaded ``Checkpoint``. Its normalisation is applied globally, and the
      output is in the input's intensity units: float32, or the input's dtype with ``dtype="input"`` (rounded and
      clipped to its range).
    - ``output=None`` returns a numpy array (axes in the input's order); a path writes an OME-Zarr (NGFF 0.5, axes
      in TCZYX order, scale and translation of the input; ``pyramid_levels`` extra 2x levels, by default
      (``"auto"``) until the smallest fits 1024 px, filled in as blocks finish) and returns the path.
      Rerunning the same job on a partial output resumes it; anything else there needs ``overwrite=True``.
    - ``tile`` (largest model tile), ``overlap`` (= halo), ``chunks`` (output block = zarr chunk), ``window``
      (``"cosine"`` or ``"gaussian"``), ``batch_size``: see ``restoration.plan``; defaults in ``options.DEFAULTS``.
    - ``intensities``: ``"check"`` refuses an input whose percentiles are far from those of the checkpoint's training
      data (another modality or unit); ``"renormalize"`` uses the input's own percentiles; ``"as-is"`` skips the check.
    - ``device``: ``"auto"`` (CUDA, MPS, CPU), ``"cpu"``, ``"cuda:1"``...; ``distributed``: a dask scheduler address
      or a number of local worker processes (then ``input`` and ``output`` must be paths).
    - ``qc_teacher`` (a checkpoint path or ``Checkpoint``): after restoring, the teacher restores ``qc_fraction``
      of the blocks (at least one; always the ones the student changed most) and the output records the student's
      PSNR against it per block under ``qc`` (see :mod:`.qc`; read it back with :func:`~.target.read_qc`). Adding QC to
      a finished OME-Zarr output of the same job runs only the check. Needs an output path.
    - ``progress`` receives a :class:`ProgressEvent` per block (phase ``"restore"``, then ``"qc"``); ``cancel`` (a
      ``threading.Event``) stops between blocks, leaving a resumable output.
    """
    options = RestoreOptions.of(
        axes=axes, tile=tile, overlap=overlap, chunks=chunks, batch_size=batch_size, window=window, dtype=dtype,
        pyramid_levels=pyramid_levels, device=device, distributed=distributed, intensities=intensities,
        qc_teacher=qc_teacher, qc_fraction=qc_fraction,
    )  # fmt: skip
    job = prepare(input, checkpoint, options)
    return run_prepared(job, output, options, overwrite=overwrite, progress=progress, cancel=cancel)


def run_prepared(
    job: PreparedRestore,
    output: str | os.PathLike | None,
    options: RestoreOptions,
    *,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    cancel: Cancel | None = None,
) -> np.ndarray | Path:
    """Run a prepared restoration (:func:`~.prepare.prepare`) into memory, an OME-Zarr store, or a TIFF or NIfTI file
    (by the output's name); ``RestoreJob`` and the Restore widget call it with their validated options."""
    teacher = qc_teacher_for(job, options.qc_teacher)  # a teacher that cannot check is refused before any work
    if output is None:
        if options.distributed is not None:
            raise InputError("distributed restoration needs an output path: the workers write their blocks there")
        if teacher is not None:
            raise InputError(
                "fidelity QC is recorded with the output: give an output path (e.g. 'restored.ome.zarr'), or call "
                "napari_skd.restoration.qc.check_result on the result"
            )
        result, _ = _in_memory(job, progress, cancel)
        return _input_order(result, job.canonical.axes, job.image.axes)
    output = Path(output)
    try:
        target = output_target(
            output, job, overwrite, qc=teacher is not None, distributed=options.distributed is not None
        )
        if target.check_only:  # finished before: only the check runs
            with target.open():
                _check_target(job, target, teacher, options, progress, cancel)
            return output
        spec = worker_spec(job, output) if options.distributed is not None else None  # before anything is written
        with target.open():
            if _restore_into(target, job, spec, options, progress, cancel):
                target.finish()
                if teacher is not None:
                    _check_target(job, target, teacher, options, progress, cancel)
                if target.complete:
                    n = len(job.items)
                    emit(progress, ProgressEvent("done", n, n, message=f"wrote {output}"))
    except OSError as err:  # e.g. a full disk: the blocks recorded so far stay, and a rerun resumes after them
        if (message := write_error(output, err, "rerun the same job to resume")) is None:
            raise
        raise message from err
    return output


def _in_memory(job: PreparedRestore, progress: ProgressFn | None, cancel: Cancel | None) -> tuple[np.ndarray, bool]:
    """The whole result in canonical (TCZYX) order, and whether every block ran (False when stopped)."""
    layout, n = job.layout, len(job.items)
    result = np.zeros(layout.out_shape, dtype=job.options.dtype)

    def write(item: OutputBlock, values: np.ndarray) -> None:
        write_block(result, layout, item, values)

    emit(progress, ProgressEvent("restore", 0, n, message=job.sentence))
    finished = _run_local(job, job.items, write, 0, progress, cancel)
    if finished:
        emit(progress, ProgressEvent("done", n, n, message="restored in memory"))
    return result, finished


def _restore_into(
    target: Target,
    job: PreparedRestore,
    spec: WorkerSpec | None,
    options: RestoreOptions,
    progress: ProgressFn | None,
    cancel: Cancel | None,
) -> bool:
    """Restore the target's pending blocks into it, locally or on dask workers; False when stopped."""
    n = len(job.items)
    todo = target.pending(job.items)
    done = n - len(todo)
    note = target.note_run(job.run_description())
    where = f"resuming: {done} of {n} blocks already done{note}; " if done else ""
    emit(progress, ProgressEvent("restore", done, n, message=where + job.sentence))
    if spec is not None:
        return run_distributed(spec, todo, options.distributed, target.written,
                               total=n, done_before=done, progress=progress, cancel=cancel)  # fmt: skip
    finished = _run_local(job, todo, target.write, done, progress, cancel)
    if finished and target.held_in_memory:
        emit(progress, ProgressEvent("done", n, n, message="restored in memory"))
    return finished


def _check_target(
    job: PreparedRestore,
    target: Target,
    teacher: Checkpoint,
    options: RestoreOptions,
    progress: ProgressFn | None,
    cancel: Cancel | None,
) -> None:
    """Fidelity QC of a finished output, stored with it under ``qc`` (nothing is stored when stopped)."""
    student = stored_block(target.array, job.layout)
    report = check_fidelity(job, student, teacher, options.qc_fraction, progress=progress, cancel=cancel)
    if report is not None:
        target.set_qc(report.to_attrs())


def _run_local(
    job: PreparedRestore,
    items: list[OutputBlock],
    write: Any,
    done: int,
    progress: ProgressFn | None,
    cancel: Cancel | None,
) -> bool:
    restorer = make_restorer(job.ckpt, job.norm, job.dev, job.options, progress)
    data, layout = job.canonical.data, job.layout
    return run_local(
        items,
        lambda item: read_region(data, layout, item),
        lambda region, item: restorer(region, item.block),
        write,
        total=len(job.items),
        done_before=done,
        progress=progress,
        cancel=cancel,
    )


def _input_order(result: np.ndarray, canonical: str, original: str) -> np.ndarray:
    """A canonical (TCZYX-ordered) result transposed back to the input's axis order."""
    return result.transpose([canonical.index(a) for a in original]) if canonical != original else result
