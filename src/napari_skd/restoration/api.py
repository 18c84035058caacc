"""``restore``: the entry point the GUI and CLI call to restore a whole image, tile by tile, out of core."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, write_error
from ..io import Image, open_image
from ..io.writers import build_pyramid, create_ome_zarr, open_level
from ..progress import Cancel, ProgressEvent, ProgressFn, emit
from .layout import Layout, OutputBlock, make_layout, output_blocks, place, read_region
from .options import Options, resolve_options
from .plan import plan_blocks
from .state import KEY, JobState, fingerprint, locked_output, remove_partial_files


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
    pyramid_levels: int = 0,
) -> np.ndarray | Path:
    """Restore ``input`` with a checkpoint's model, block by block, so images larger than memory stream through.

    - ``input``: a path (TIFF, zarr/OME-Zarr, NIfTI, DICOM), a numpy, dask or zarr array, or an :class:`Image`;
      ``axes`` names its dimensions when the file does not (OME letters, e.g. ``"ZYX"``).
    - ``checkpoint``: a checkpoint path or a loaded ``Checkpoint``. Its normalisation is applied globally, and the
      output is in the input's intensity units: float32, or the input's dtype with ``dtype="input"`` (rounded and
      clipped to its range).
    - ``output=None`` returns a numpy array (axes in the input's order); a path writes an OME-Zarr (NGFF 0.5, axes
      in TCZYX order, scale and translation of the input, ``pyramid_levels`` extra 2x levels) and returns the path.
      Rerunning the same job on a partial output resumes it; anything else there needs ``overwrite=True``.
    - ``tile`` (largest model tile), ``overlap`` (= halo), ``chunks`` (output block = zarr chunk), ``window``
      (``"cosine"`` or ``"gaussian"``), ``batch_size``: see ``restoration.plan``; defaults in ``options.DEFAULTS``.
    - ``device``: ``"auto"`` (CUDA, MPS, CPU), ``"cpu"``, ``"cuda:1"``...; ``distributed``: a dask scheduler address
      or a number of local worker processes (then ``input`` and ``output`` must be paths).
    - ``progress`` receives a :class:`ProgressEvent` per block (phase ``"restore"``); ``cancel`` (a
      ``threading.Event``) stops between blocks, leaving a resumable output.
    """
    if not isinstance(pyramid_levels, (int, np.integer)) or pyramid_levels < 0:
        raise InputError(f"pyramid_levels must be a whole number >= 0 (0: level 0 only), got {pyramid_levels!r}")
    job = _prepare(input, checkpoint, axes, device, distributed, tile, overlap, chunks, window, dtype, batch_size)
    if output is None:
        if distributed is not None:
            raise InputError("distributed restoration needs an output path: the workers write their blocks there")
        return _to_memory(job, progress, cancel)
    try:
        return _to_zarr(job, Path(output), overwrite, distributed, pyramid_levels, progress, cancel)
    except OSError as err:  # e.g. a full disk: the blocks recorded so far stay, and a rerun resumes after them
        if (message := write_error(output, err, "rerun the same job to resume")) is None:
            raise
        raise message from err


@dataclass
class _Job:
    """A validated job: the image (as opened and in TCZYX order), the model, the axes layout, options and blocks."""

    image: Image
    canonical: Image
    ckpt: Any
    layout: Layout
    options: Options
    items: list[OutputBlock]
    device: str
    dev: Any  # torch.device of a local run (None when distributed: the workers resolve ``device``)
    sentence: str

    def description(self) -> dict[str, Any]:
        """What identifies the output's bytes: input identity, checkpoint hash, normalisation and options."""
        c = self.canonical
        return {
            "input": {
                "source": c.source,
                "token": c.data.name,
                "shape": list(c.shape),
                "dtype": str(c.data.dtype),
                "axes": c.axes,
            },
            "checkpoint": self.ckpt.hash,
            "norm": self.ckpt.norm.model_dump() if self.ckpt.norm is not None else None,
            **self.options.job(),
        }


def _prepare(
    input: Any,
    checkpoint: Any,
    axes: str | None,
    device: str,
    distributed: str | int | None,
    tile: int | tuple[int, ...] | None,
    overlap: int | None,
    chunks: int | tuple[int, ...] | None,
    window: str,
    dtype: str,
    batch_size: int | None,
) -> _Job:
    """Open the input and checkpoint, check that they fit, resolve options and plan every block (writes nothing)."""
    from ..checkpoint import Checkpoint, load_checkpoint
    from ..device import resolve_device

    image = open_image(input, axes)
    canonical = image.to_canonical()
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    cfg = ckpt.config
    layout = make_layout(canonical.axes, canonical.shape, cfg.in_channels, cfg.out_channels, cfg.spatial_dims)
    if distributed is None:
        dev, sentence = resolve_device(device)
        device_type = dev.type
    else:  # the workers may have GPUs this process lacks
        dev, sentence = None, f"on dask workers ({distributed}), device {device}"
        device_type = "cpu" if str(device) == "cpu" else "cuda"
    options = resolve_options(
        layout.spatial_shape,
        multiple=cfg.multiple,
        input_dtype=canonical.data.dtype,
        tile=tile,
        overlap=overlap,
        chunks=chunks,
        window=window,
        dtype=dtype,
        batch_size=batch_size,
        device_type=device_type,
    )
    blocks = plan_blocks(
        layout.spatial_shape, options.chunks, options.tile, options.overlap, options.halo, cfg.multiple
    )
    items = output_blocks(layout, blocks)
    return _Job(image, canonical, ckpt, layout, options, items, str(device), dev, sentence)


def _to_memory(job: _Job, progress: ProgressFn | None, cancel: Cancel | None) -> np.ndarray:
    layout, n = job.layout, len(job.items)
    result = np.zeros(layout.out_shape, dtype=job.options.dtype)

    def write(item: OutputBlock, values: np.ndarray) -> None:
        result[layout.index(item.outer, item.block.out)] = place(layout, values)

    emit(progress, ProgressEvent("restore", 0, n, message=job.sentence))
    if _run_local(job, job.items, write, 0, progress, cancel):
        emit(progress, ProgressEvent("done", n, n, message="restored in memory"))
    return _input_order(result, job.canonical.axes, job.image.axes)


def _to_zarr(
    job: _Job,
    output: Path,
    overwrite: bool,
    distributed: str | int | None,
    pyramid_levels: int,
    progress: ProgressFn | None,
    cancel: Cancel | None,
) -> Path:
    import zarr

    _check_paths(job.image, output)
    if job.ckpt.path is not None and Path(job.ckpt.path).resolve().is_relative_to(output.resolve()):
        raise InputError(
            f"the output {output} is or holds the checkpoint {job.ckpt.path}: inputs are never modified; "
            "choose another output path"
        )
    if distributed is not None:  # checked before anything is written
        from .distributed import WorkerJob

        worker_job = WorkerJob(
            _source_path(job.image),
            job.image.axes,
            _checkpoint_path(job.ckpt),
            job.layout,
            job.options,
            job.device,
            str(output),
        )
    layout, items, n = job.layout, job.items, len(job.items)
    description = job.description()
    with locked_output(output, description, overwrite) as (status, record):
        if status == "new":
            c = job.canonical
            create_ome_zarr(
                output,
                shape=layout.out_shape,
                dtype=job.options.dtype,
                chunks=layout.out_chunks(job.options.chunks),
                axes=c.axes,
                scale=c.scale,
                units=c.units,
                translation=c.translation,
                name=c.name,
            )
            record = {
                "job": description,
                "fingerprint": fingerprint(description),
                "blocks": n,
                "done": "",
                "complete": False,
                "intensity_unit": c.intensity_unit,
            }
        group = zarr.open_group(str(output), mode="r+")
        state = JobState(group, record)
        if status == "new":
            group.attrs[KEY] = record  # only now: a store without its record is never taken for a resumable one
        else:
            remove_partial_files(output)
        array = open_level(output)
        ordinal = {item.key: i for i, item in enumerate(items)}
        todo = [item for item in items if not state.done[ordinal[item.key]]]
        done = n - len(todo)
        batch = job.options.batch_size if job.dev is None or job.dev.type != "cpu" else 1
        note = state.note_run({"device": str(job.dev) if job.dev is not None else job.sentence, "batch_size": batch})
        where = f"resuming: {done} of {n} blocks already done{note}; " if done else ""
        emit(progress, ProgressEvent("restore", done, n, message=where + job.sentence))

        if distributed is not None:
            from .distributed import run_distributed

            def mark(item: OutputBlock) -> None:
                state.mark_done(ordinal[item.key])

            finished = run_distributed(
                worker_job, todo, distributed, mark, total=n, done_before=done, progress=progress, cancel=cancel
            )
        else:

            def write(item: OutputBlock, values: np.ndarray) -> None:
                array[layout.index(item.outer, item.block.out)] = place(layout, values)
                state.mark_done(ordinal[item.key])

            finished = _run_local(job, todo, write, done, progress, cancel)
        if finished:
            if pyramid_levels:
                build_pyramid(output, pyramid_levels)
                state.group = zarr.open_group(str(output), mode="r+")  # holds the new multiscales
            state.mark_complete()
            emit(progress, ProgressEvent("done", n, n, message=f"wrote {output}"))
    return output


def _run_local(
    job: _Job,
    items: list[OutputBlock],
    write: Any,
    done: int,
    progress: ProgressFn | None,
    cancel: Cancel | None,
) -> bool:
    from .infer import BlockRestorer
    from .runner import run_local

    o = job.options
    restorer = BlockRestorer(
        job.ckpt.model,
        job.ckpt.norm,
        job.dev,
        tile=o.tile,
        overlap=o.overlap,
        window=o.window,
        batch_size=o.batch_size,
        dtype=np.dtype(o.dtype),
        progress=progress,
    )
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


def _check_paths(image: Image, output: Path) -> None:
    """Refuse an output that is, contains or lies inside the input (the input is never modified)."""
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
