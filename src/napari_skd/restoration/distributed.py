"""dask-distributed backend: whole blocks run on workers, each worker loads the model once and writes its blocks.

The client (the process that called ``restore``) holds the output's writer lock and records finished blocks as
their futures complete; workers only read their input region from the source path, restore it with the same
:class:`~napari_skd.restoration.infer.BlockRestorer` as the local runner, and write their chunk into the zarr store.
A worker keeps the opened image, the model and the output array of the current job in a cache keyed by the job, so
the checkpoint is loaded once per worker, not once per block. Results equal those of a local run with the same
options, since a block's bytes depend only on its own region (on the CPU; different GPUs may round differently).

Running on a GPU cluster: start one single-threaded worker per GPU and make that GPU the only one it sees, e.g. on
each node ``dask scheduler`` once, then for every GPU ``i``::

    CUDA_VISIBLE_DEVICES=i dask worker tcp://SCHEDULER:8786 --nworkers 1 --nthreads 1 --memory-limit 0

(or ``dask-cuda``'s ``dask cuda worker``, which does the same), and call
``restore("in.zarr", "model.pt", "/shared/out.zarr", distributed="tcp://SCHEDULER:8786", device="cuda")``.
Input, checkpoint and output paths must be visible to every worker under the same names (a shared file system).
``distributed=N`` instead starts a ``LocalCluster`` of N single-threaded worker processes on this machine.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checkpoint import load_checkpoint
from ..device import resolve_device
from ..errors import InputError
from ..io import open_image
from ..normalize import Normalization
from ..progress import Cancel, Eta, ProgressEvent, ProgressFn, emit
from .infer import BlockRestorer
from .layout import Layout, OutputBlock, read_region
from .options import Options
from .prepare import PreparedRestore, make_restorer
from .runner import block_text
from .target import open_output_array, write_block


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs to restore any block of a job (hashable: it keys the worker's cache)."""

    source: str  # input path, opened by each worker
    axes: str  # the input's axes as opened
    checkpoint: str  # checkpoint path, loaded once per worker
    norm: Normalization | None  # the normalisation the client chose (the checkpoint's, or the input's own)
    layout: Layout
    options: Options
    device: str
    output: str  # OME-Zarr store


def worker_spec(job: PreparedRestore, output: Path) -> WorkerSpec:
    """What the workers of ``job`` need, writing into the store at ``output``; the input and the checkpoint must be
    files each worker can open."""
    image, ckpt = job.image, job.ckpt
    if image.source == "<array>" or not Path(image.source).exists():
        raise InputError(
            "distributed restoration needs the input as a file path (TIFF, zarr, ...): each worker opens it itself; "
            "save the array to a zarr or TIFF file first, or run without distributed"
        )
    if ckpt.path is None or not Path(ckpt.path).exists():
        raise InputError(
            "distributed restoration needs the checkpoint as a file: each worker loads the model itself; "
            "save it with save_checkpoint and pass the path"
        )
    source, checkpoint = str(Path(image.source).resolve()), str(Path(ckpt.path).resolve())
    return WorkerSpec(source, image.axes, checkpoint, job.norm, job.layout, job.options, job.device, str(output))


_context_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def _context(spec: WorkerSpec) -> tuple[Any, BlockRestorer, Any]:
    """The job's canonical input array, block restorer and output array, built once per worker process."""
    image = open_image(spec.source, spec.axes).to_canonical()
    device, _ = resolve_device(spec.device)
    restorer = make_restorer(load_checkpoint(spec.checkpoint), spec.norm, device, spec.options)
    return image.data, restorer, open_output_array(spec.output)


def restore_block(spec: WorkerSpec, item: OutputBlock) -> str:
    """Worker task: read, restore and write one block; returns its key (the client records it as done)."""
    with _context_lock:
        data, restorer, array = _context(spec)
    write_block(array, spec.layout, item, restorer(read_region(data, spec.layout, item), item.block))
    return item.key


def run_distributed(
    spec: WorkerSpec,
    items: Sequence[OutputBlock],
    cluster: str | int,
    mark_done: Callable[[OutputBlock], None],
    *,
    total: int,
    done_before: int = 0,
    progress: ProgressFn | None = None,
    cancel: Cancel | None = None,
) -> bool:
    """Restore ``items`` on a dask cluster (a scheduler address, or N local worker processes); False if cancelled.
    ``cluster`` was validated by ``RestoreOptions``."""
    from distributed import Client, LocalCluster, as_completed  # heavy: imported only when a cluster is used

    local = None
    if isinstance(cluster, int):
        local = LocalCluster(n_workers=cluster, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        client = Client(local if local is not None else cluster)
    except (OSError, TimeoutError) as err:
        if local is not None:
            local.close()
        raise InputError(
            f"cannot connect to the dask scheduler {cluster!r}: {err}; check the address (e.g. tcp://host:8786) "
            "and that the scheduler is running"
        ) from err
    by_key = {item.key: item for item in items}
    futures = [client.submit(restore_block, spec, item, pure=False) for item in items]
    eta, step = Eta(done_before), done_before
    try:
        for future in as_completed(futures):
            item = by_key[future.result()]  # raises the worker's error here
            mark_done(item)
            step += 1
            emit(
                progress,
                ProgressEvent("restore", step, total, eta_s=eta(step, total), message=block_text(item, step, total)),
            )
            if cancel is not None and cancel.is_set() and step < total:
                emit(progress, ProgressEvent("stopped", step, total, message="stopped; rerun the same job to resume"))
                return False
        return True
    finally:
        client.cancel(futures)
        client.close()
        if local is not None:
            local.close()
