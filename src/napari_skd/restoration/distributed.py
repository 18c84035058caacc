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
from typing import Any

from ..errors import InputError
from ..progress import Cancel, Eta, ProgressEvent, ProgressFn, emit
from .layout import Layout, OutputBlock, place, read_region
from .options import Options


@dataclass(frozen=True)
class WorkerJob:
    """Everything a worker needs to restore any block of a job (hashable: it keys the worker's cache)."""

    source: str  # input path, opened by each worker
    axes: str  # the input's axes as opened
    checkpoint: str  # checkpoint path, loaded once per worker
    layout: Layout
    options: Options
    device: str
    output: str  # OME-Zarr store


_context_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def _context(job: WorkerJob) -> tuple[Any, Any, Any]:
    """The job's canonical input array, block restorer and output array, built once per worker process."""
    import numpy as np

    from ..checkpoint import load_checkpoint
    from ..device import resolve_device
    from ..io import open_image
    from ..io.writers import open_level
    from .infer import BlockRestorer

    image = open_image(job.source, job.axes).to_canonical()
    ckpt = load_checkpoint(job.checkpoint)
    device, _ = resolve_device(job.device)
    o = job.options
    restorer = BlockRestorer(
        ckpt.model,
        ckpt.norm,
        device,
        tile=o.tile,
        overlap=o.overlap,
        window=o.window,
        batch_size=o.batch_size,
        dtype=np.dtype(o.dtype),
    )
    return image.data, restorer, open_level(job.output)


def restore_block(job: WorkerJob, item: OutputBlock) -> str:
    """Worker task: read, restore and write one block; returns its key (the client records it as done)."""
    with _context_lock:
        data, restorer, array = _context(job)
    values = restorer(read_region(data, job.layout, item), item.block)
    array[job.layout.index(item.outer, item.block.out)] = place(job.layout, values)
    return item.key


def run_distributed(
    job: WorkerJob,
    items: Sequence[OutputBlock],
    cluster: str | int,
    mark_done: Callable[[OutputBlock], None],
    *,
    total: int,
    done_before: int = 0,
    progress: ProgressFn | None = None,
    cancel: Cancel | None = None,
) -> bool:
    """Restore ``items`` on a dask cluster (a scheduler address, or N local worker processes); False if cancelled."""
    from distributed import Client, LocalCluster, as_completed

    local = None
    if isinstance(cluster, bool) or not isinstance(cluster, (int, str)):
        raise InputError(f"distributed must be a scheduler address or a number of local workers, not {cluster!r}")
    if isinstance(cluster, int):
        if cluster < 1:
            raise InputError(f"distributed={cluster}: expected at least 1 local worker")
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
    futures = [client.submit(restore_block, job, item, pure=False) for item in items]
    eta, step = Eta(done_before), done_before
    try:
        for future in as_completed(futures):
            item = by_key[future.result()]  # raises the worker's error here
            mark_done(item)
            step += 1
            emit(progress, ProgressEvent("restore", step, total, eta_s=eta(step, total), message=f"block {item.key}"))
            if cancel is not None and cancel.is_set() and step < total:
                emit(progress, ProgressEvent("stopped", step, total, message="stopped; rerun the same job to resume"))
                return False
        return True
    finally:
        client.cancel(futures)
        client.close()
        if local is not None:
            local.close()
