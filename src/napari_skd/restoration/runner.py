"""The local pipeline: a reader thread prefetches block regions, the caller's thread restores them (one model on
one device), a writer thread writes finished blocks. Progress is reported per written block; ``cancel`` is checked
between blocks, and blocks already restored are still written, so a cancelled run leaves a resumable output.
A single block (a small image) has nothing to overlap, so it runs read, restore, write in the caller's thread.
The first local run of a process asks glibc to keep freed memory for the next model call (:func:`keep_freed_memory`;
dask workers keep dask's own setting, which returns memory at once).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..progress import Cancel, Eta, ProgressEvent, ProgressFn, emit
from .layout import OutputBlock

_END = object()


def run_local(
    items: Sequence[OutputBlock],
    read: Callable[[OutputBlock], np.ndarray],
    restore: Callable[[np.ndarray, OutputBlock], np.ndarray],
    write: Callable[[OutputBlock, np.ndarray], None],
    *,
    total: int,
    done_before: int = 0,
    progress: ProgressFn | None = None,
    cancel: Cancel | None = None,
    prefetch: int = 2,
) -> bool:
    """Restore ``items`` in order; returns False when stopped through ``cancel``.

    ``read`` runs in the reader thread, ``restore`` here, ``write`` in the writer thread. The first error of any of
    them stops the pipeline and is raised here once blocks restored before it are written.
    """
    keep_freed_memory()
    if len(items) == 1:
        return _run_one(items[0], read, restore, write, total, done_before, progress, cancel)
    stop = threading.Event()
    regions: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    results: queue.Queue = queue.Queue(maxsize=2)
    written: queue.Queue = queue.Queue()
    failure: list[BaseException] = []  # first error of any thread
    write_failed = threading.Event()

    def reader() -> None:
        for item in items:
            if stop.is_set():
                break
            try:
                value: Any = read(item)
            except BaseException as err:  # handed to the consumer, which raises it
                value = err
            if not _put(regions, (item, value), stop) or isinstance(value, BaseException):
                return
        _put(regions, _END, stop)

    def writer() -> None:
        while True:
            got = results.get()
            if got is _END:
                return
            if write_failed.is_set():
                continue  # drain: nothing more can be written
            try:
                write(*got)
                written.put(got[0])
            except BaseException as err:
                failure.append(err)
                write_failed.set()
                stop.set()

    threads = [threading.Thread(target=f, name=f"napari-skd-{f.__name__}", daemon=True) for f in (reader, writer)]
    for t in threads:
        t.start()
    eta, step, stopped = Eta(done_before), done_before, False

    def report() -> None:
        nonlocal step
        while not written.empty():
            item = written.get()
            step += 1
            emit(progress, ProgressEvent("restore", step, total, eta_s=eta(step, total),
                                         message=block_text(item, step, total)))  # fmt: skip

    try:
        while not failure:
            got = _get(regions, stop)
            if got is _END or got is None:
                break
            item, region = got
            if isinstance(region, BaseException):
                failure.append(region)
                break
            if cancel is not None and cancel.is_set():
                stopped = True
                break
            results.put((item, restore(region, item)))
            report()
    except BaseException as err:
        failure.append(err)
    finally:
        stop.set()
        results.put(_END)
        for t in threads:
            t.join()
        report()
    if failure:
        raise failure[0]
    if stopped:
        emit(progress, ProgressEvent("stopped", step, total, message="stopped; rerun the same job to resume"))
        return False
    return True


def _run_one(
    item: OutputBlock,
    read: Callable[[OutputBlock], np.ndarray],
    restore: Callable[[np.ndarray, OutputBlock], np.ndarray],
    write: Callable[[OutputBlock, np.ndarray], None],
    total: int,
    done_before: int,
    progress: ProgressFn | None,
    cancel: Cancel | None,
) -> bool:
    """:func:`run_local` for one block, without threads (the same events, the same errors)."""
    eta = Eta(done_before)
    region = read(item)
    if cancel is not None and cancel.is_set():
        emit(progress, ProgressEvent("stopped", done_before, total, message="stopped; rerun the same job to resume"))
        return False
    write(item, restore(region, item))
    step = done_before + 1
    emit(progress, ProgressEvent("restore", step, total, eta_s=eta(step, total),
                                 message=block_text(item, step, total)))  # fmt: skip
    return True


def block_text(item: OutputBlock, step: int, total: int) -> str:
    """``block 3 of 12 (z 0:64, y 128:256, x 0:128)``; with outer axes ``block 3 of 12 (plane 5: y 0:256, x 0:256)``
    (a 2D model's plane, or a 3D model's volume, along the axes it does not see)."""
    out = item.block.out
    where = ", ".join(f"{a} {s.start}:{s.stop}" for a, s in zip("zyx"[-len(out) :], out, strict=True))
    if item.outer:
        position = str(item.outer[0]) if len(item.outer) == 1 else str(tuple(item.outer))
        where = f"{'plane' if len(out) == 2 else 'volume'} {position}: {where}"
    return f"block {step} of {total} ({where})"


#: glibc serves requests up to ``MMAP_MB`` from its heap and keeps up to ``KEEP_MB`` of it free (see keep_freed_memory).
MMAP_MB, KEEP_MB = 64, 256
_MALLOC: list[bool] = []  # whether the settings are in force, once tried


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for the next model call instead of handing it back to the system.

    By default glibc maps requests over 32 MB afresh and returns the free top of its heap, so every forward pass of a
    mid-size tile faults its activations in again: 12,000 page faults with ``unet-s`` on a 224 x 576 tile, a
    quarter of its forward pass, and a small image is one such pass. Here requests up to ``MMAP_MB`` come from the
    heap and up to ``KEEP_MB`` of it stays free for the next pass: the process may hold that much more than it uses
    between restorations. Once per process, with glibc (elsewhere nothing changes); returns whether the settings are
    in force.
    """
    if not _MALLOC:
        ok = False
        with contextlib.suppress(OSError, AttributeError, ValueError):
            if os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
                mallopt = ctypes.CDLL("libc.so.6").mallopt
                m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
                ok = bool(mallopt(m_mmap_threshold, MMAP_MB << 20) and mallopt(m_trim_threshold, KEEP_MB << 20))
        _MALLOC.append(ok)
    return _MALLOC[0]


def _put(q: queue.Queue, value: Any, stop: threading.Event) -> bool:
    """Put unless ``stop`` is set first (a bounded queue must not block a thread forever)."""
    while not stop.is_set():
        try:
            q.put(value, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event) -> Any:
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return None
