"""``restore``: the entry point the GUI and CLI call to restore a whole image, tile by tile, out of core.

It validates the options, prepares the job (``prepare``), then dispatches its blocks to the local pipeline
(``runner``) or to dask workers (``distributed``), into memory or into an :class:`~.store.OutputStore`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import Checkpoint
from ..errors import InputError, write_error
from ..io import Image
from ..progress import Cancel, ProgressEvent, ProgressFn, emit
from .distributed import WorkerSpec, run_distributed
from .files import OutputFormat, check_fits, complete_for, output_format, read_file_record, write_file
from .layout import OutputBlock, read_region
from .options import RestoreOptions
from .prepare import PreparedRestore, make_restorer, prepare
from .qc import check_fidelity, qc_teacher_for, stored_block
from .runner import run_local
from .state import foreign, judge, new_record
from .store import OutputStore, write_block


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
      PSNR against it per block under ``qc`` (see :mod:`.qc`; read it back with :func:`~.qc.read_qc`). Adding QC to
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
    _check_paths(job, output)
    fmt = output_format(output)
    try:
        if fmt == "ome-zarr":
            return _to_store(job, output, overwrite, options, teacher, progress, cancel)
        return _to_file(job, output, fmt, overwrite, options, teacher, progress, cancel)
    except OSError as err:  # e.g. a full disk: the blocks recorded so far stay, and a rerun resumes after them
        if (message := write_error(output, err, "rerun the same job to resume")) is None:
            raise
        raise message from err


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


def _to_file(
    job: PreparedRestore,
    output: Path,
    fmt: OutputFormat,
    overwrite: bool,
    options: RestoreOptions,
    teacher: Checkpoint | None,
    progress: ProgressFn | None,
    cancel: Cancel | None,
) -> Path:
    """Restore in memory, then write one OME-TIFF or NIfTI file (atomically); a stopped run writes nothing."""
    if options.distributed is not None:
        raise InputError(
            f"distributed restoration writes OME-Zarr (the workers write their blocks into one store), not {fmt}: "
            "name the output .ome.zarr"
        )
    check_fits(job.layout.out_shape, job.options.dtype, fmt, output)
    description = job.description()
    if output.is_dir():
        raise InputError(foreign(output, "is a folder"))
    if output.exists():
        ours, record = read_file_record(output)
        if teacher is not None and not overwrite and complete_for(output, description):
            raise InputError(
                f"the output {output} is already complete for this same job; adding fidelity QC to a {fmt} file "
                "rewrites it: pass overwrite=True (--overwrite) to restore it again with QC, or write OME-Zarr, "
                "where QC can be added to a finished output"
            )
        judge(output, record, ours, description, overwrite)
    result, finished = _in_memory(job, progress, cancel)
    if finished and teacher is not None:
        report = check_fidelity(job, stored_block(result, job.layout), teacher, options.qc_fraction,
                                progress=progress, cancel=cancel)  # fmt: skip
        finished = report is not None
    if finished:
        record = new_record(description, len(job.items), job.canonical.intensity_unit) | {"complete": True}
        if teacher is not None:
            record["qc"] = report.to_attrs()
        write_file(output, fmt, result, job.canonical, record)
        emit(progress, ProgressEvent("done", len(job.items), len(job.items), message=f"wrote {output}"))
    return output


def _to_store(
    job: PreparedRestore,
    output: Path,
    overwrite: bool,
    options: RestoreOptions,
    teacher: Checkpoint | None,
    progress: ProgressFn | None,
    cancel: Cancel | None,
) -> Path:
    if teacher is not None and not overwrite and complete_for(output, job.description()):
        with OutputStore.reopen(output, job) as store:  # finished before: only the check runs
            _check_store(job, store, teacher, options, progress, cancel)
        return output
    if options.distributed is not None:  # checked before anything is written
        spec = WorkerSpec(_source_path(job.image), job.image.axes, _checkpoint_path(job.ckpt), job.norm,
                          job.layout, job.options, job.device, str(output))  # fmt: skip
    n = len(job.items)
    with OutputStore.open(output, job, overwrite) as store:
        todo = store.pending(job.items)
        done = n - len(todo)
        note = store.note_run(job.run_description())
        where = f"resuming: {done} of {n} blocks already done{note}; " if done else ""
        emit(progress, ProgressEvent("restore", done, n, message=where + job.sentence))
        if options.distributed is not None:
            finished = run_distributed(spec, todo, options.distributed, store.written,
                                       total=n, done_before=done, progress=progress, cancel=cancel)  # fmt: skip
        else:
            finished = _run_local(job, todo, store.write, done, progress, cancel)
        if finished:
            store.finish()
            if teacher is not None:
                _check_store(job, store, teacher, options, progress, cancel)
            emit(progress, ProgressEvent("done", n, n, message=f"wrote {output}"))
    return output


def _check_store(
    job: PreparedRestore,
    store: OutputStore,
    teacher: Checkpoint,
    options: RestoreOptions,
    progress: ProgressFn | None,
    cancel: Cancel | None,
) -> None:
    """Fidelity QC of a finished store, recorded under ``qc`` (nothing is recorded when stopped)."""
    student = stored_block(store.array, job.layout)
    report = check_fidelity(job, student, teacher, options.qc_fraction, progress=progress, cancel=cancel)
    if report is not None:
        store.set_qc(report.to_attrs())


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


def _check_paths(job: PreparedRestore, output: Path) -> None:
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


def _source_path(image: Image) -> str:
    if image.source == "<array>" or not Path(image.source).exists():
        raise InputError(
            "distributed restoration needs the input as a file path (TIFF, zarr, ...): each worker opens it itself; "
            "save the array to a zarr or TIFF file first, or run without distributed"
        )
    return str(Path(image.source).resolve())


def _checkpoint_path(ckpt: Any) -> str:
    if ckpt.path is None or not Path(ckpt.path).exists():
        raise InputError(
            "distributed restoration needs the checkpoint as a file: each worker loads the model itself; "
            "save it with save_checkpoint and pass the path"
        )
    return str(Path(ckpt.path).resolve())
