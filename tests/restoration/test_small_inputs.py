"""Small inputs use every core: a block of fewer tiles than threads runs its tiles on several torch threads, a single
block runs without pipeline threads and a model used again is not copied again; the bytes stay within a stated
tolerance of the one-thread run."""

import copy
import os
import threading

import numpy as np
import pytest
import torch

from conftest import untrained
from napari_skd import restore
from napari_skd.checkpoint import Checkpoint
from napari_skd.normalize import Normalization
from napari_skd.progress import ProgressEvent
from napari_skd.restoration.layout import OutputBlock
from napari_skd.restoration.options import DEFAULTS
from napari_skd.restoration.plan import cpu_schedule, plan_blocks
from napari_skd.restoration.runner import keep_freed_memory, run_local
from napari_skd.samples import load_sample

NUCLEI, _ = load_sample("nuclei2d")
IMAGE = NUCLEI[:77, :96]  # one block, one 144 x 160 tile with the default plan (overlap 32 on every side)
GRID = dict(tile=48, overlap=16, chunks=64)  # several tiles per block


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return untrained("unet-xs").eval()


def checkpoint(model, calls=None):
    """The model as a checkpoint; with ``calls``, each forward pass records (torch threads, thread id) there."""
    if calls is not None:
        model = untrained("unet-xs").eval()
        model.register_forward_pre_hook(lambda *_: calls.append((torch.get_num_threads(), threading.get_ident())))
    return Checkpoint(model=model, config=model.config, role="student", norm=Normalization(low=0.0, high=255.0))


def with_threads(n, fn):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


def test_cpu_schedule_shares_the_threads_among_few_tiles():
    assert cpu_schedule(1, 2) == (1, 2)  # a small image: its one tile on both cores
    assert cpu_schedule(9, 2) == (2, 1)  # enough tiles: one per core, one torch thread each
    assert cpu_schedule(2, 2) == (2, 1)
    assert cpu_schedule(2, 16) == (2, 8)
    assert cpu_schedule(3, 4) == (3, 1)
    with pytest.raises(ValueError, match="at least one"):
        cpu_schedule(0, 2)


def test_default_plan_gives_a_small_image_one_tile():
    d = DEFAULTS[2]
    for shape in ((154, 512), (512, 512), (77, 96)):
        (block,) = plan_blocks(shape, shape, d["tile"], d["overlap"])
        assert len(block.tiles()) == 1 and cpu_schedule(1, 2) == (1, 2)


def test_small_image_runs_its_tile_on_every_thread_in_the_callers_thread():
    calls: list = []
    with_threads(2, lambda: restore(IMAGE, checkpoint(None, calls)))
    assert calls == [(2, threading.get_ident())]  # one model call, two torch threads, no pipeline or pool thread
    assert torch.get_num_threads() == 2  # restored afterwards


def test_many_tiles_still_run_one_per_thread_on_one_torch_thread():
    calls: list = []
    with_threads(2, lambda: restore(IMAGE, checkpoint(None, calls), **GRID))
    assert len(calls) > 2 and {threads for threads, _ in calls} == {1}
    assert threading.get_ident() not in {ident for _, ident in calls}


def test_small_image_bytes_across_thread_counts(model):
    ck = checkpoint(model)
    one = with_threads(1, lambda: restore(IMAGE, ck))
    two = with_threads(2, lambda: restore(IMAGE, ck))
    again = with_threads(2, lambda: restore(IMAGE, ck))
    assert np.array_equal(two, again)  # the same thread count gives the same bytes
    # Not byte-identical across thread counts: torch runs a 1x1 convolution with its own kernel on one thread and
    # with oneDNN on several, and oneDNN's blocking may follow the thread count. Measured: at most 1.3e-7 of the
    # output range for U-Nets (2-7 % of the pixels differ, by an ulp or so), 5e-7 for a Restormer.
    assert np.abs(one - two).max() <= 1e-5 * np.ptp(one)


def test_blocks_of_many_tiles_give_the_same_bytes_on_one_or_two_threads(model):
    ck = checkpoint(model)
    one = with_threads(1, lambda: restore(IMAGE, ck, **GRID))
    two = with_threads(2, lambda: restore(IMAGE, ck, **GRID))
    assert np.array_equal(one, two)


def test_a_model_used_again_is_reused_only_with_the_same_weights():
    m = untrained("unet-xs").train()
    ck = checkpoint(m)
    first = restore(IMAGE, ck)
    assert np.array_equal(restore(IMAGE, ck), first)
    assert m.training and all(p.is_contiguous() for p in m.parameters())  # the caller's model is left as it was
    m.output.bias.data += 0.5  # through .data: torch's version counters do not see it
    changed = restore(IMAGE, ck)
    assert not np.allclose(changed, first)
    assert np.array_equal(changed, restore(IMAGE, checkpoint(copy.deepcopy(m))))


def _one_block():
    (block,) = plan_blocks((8, 8), (8, 8), (8, 8), 0)
    return OutputBlock((), block)


def test_a_single_block_reports_stops_and_fails_like_the_pipeline():
    item, written, events = _one_block(), [], []
    double = lambda region, _: region * 2  # noqa: E731
    ok = run_local([item], lambda _: np.ones(3), double, lambda i, v: written.append(v), total=4, done_before=3,
                   progress=events.append)  # fmt: skip
    assert ok and np.array_equal(written[0], [2, 2, 2])
    assert [(e.phase, e.step, e.total) for e in events] == [("restore", 4, 4)]
    assert events[0].message == "block 4 of 4 (y 0:8, x 0:8)"
    cancel = threading.Event()
    cancel.set()
    stopped: list[ProgressEvent] = []
    assert not run_local([item], lambda _: np.ones(3), double, written.append, total=1, progress=stopped.append,
                         cancel=cancel)  # fmt: skip
    assert [e.phase for e in stopped] == ["stopped"] and len(written) == 1

    def broken(_):
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        run_local([item], broken, double, written.append, total=1)


def _glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (AttributeError, ValueError):  # Windows, macOS
        return False


def test_glibc_keeps_freed_memory_once_a_local_run_started():
    restore(IMAGE[:16, :16], checkpoint(untrained("unet-xs")))
    assert keep_freed_memory() is _glibc() and keep_freed_memory() is _glibc()  # once per process, the same answer
