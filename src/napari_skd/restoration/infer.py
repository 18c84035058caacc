"""Restore one block: normalise, reflect-pad, run the model on batched tiles, blend, crop, back to data units.

:class:`BlockRestorer` holds the model once on its device; the local runner and every dask worker use it the same
way. On the CPU every tile runs alone (batch size 1), and :func:`~.plan.cpu_schedule` shares torch's threads out
among a block's tiles (a convolution's rounding depends on how many threads split it and on the batch):

- a block of at least as many tiles as threads runs one tile per thread, each on one torch thread, so its bytes are
  the same in a local run, a resumed run and single-threaded dask workers, whatever the core count;
- a block of fewer tiles (a small image: often a single tile) runs each tile on several torch threads, so a small
  image uses every core; its bytes then depend on the thread count (by up to 5e-7 of the output range; the same
  thread count gives the same bytes).

On GPUs tiles run in batches of ``batch_size``. On out-of-memory it frees the device cache, halves the tile and
retries the block (and says so through ``progress``).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import threading
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..device import autocast, channels_last, to_device
from ..errors import InputError
from ..normalize import Normalization
from ..progress import ProgressEvent, ProgressFn, emit
from .blend import Blender
from .options import Options, tiles_per_call
from .plan import Block, batches, cpu_schedule, plan_tiles, snap_up, tile_slices


class BlockRestorer:
    """A model on a device plus the per-block recipe (tile cap, overlap, window, batch size, output dtype)."""

    def __init__(
        self,
        model: torch.nn.Module,
        norm: Normalization | None,
        device: torch.device,
        options: Options,
        *,
        progress: ProgressFn | None = None,
    ):
        self.model, self.norm, self.device = prepared(model, device), norm, device
        self.multiple = int(getattr(model, "multiple", 8))
        self.out_channels = int(model.config.out_channels)
        self.tile = options.tile
        self.overlap, self.window = options.overlap, options.window
        self.batch_size = tiles_per_call(options.batch_size, device.type)
        self.dtype, self.progress = np.dtype(options.dtype), progress
        self.threads = torch.get_num_threads() if device.type == "cpu" else 1

    def __call__(self, region: np.ndarray, block: Block) -> np.ndarray:
        """The block's output ``(out_channels, *block.shape)`` from its read region ``(in_channels, *read shape)``."""
        with np.errstate(over="ignore"):  # values beyond float32's range become Inf, refused below
            x = region.astype(np.float32, copy=False)
            if self.norm is not None:
                x = self.norm.apply(x, channel_axis=0).astype(np.float32, copy=False)
        if not np.isfinite(x).all():  # NaN/Inf pixels, or values beyond float32's range, would spread over tiles
            axes = "ZYX"[-len(block.read) :]
            where = ", ".join(f"{a} {s.start}:{s.stop}" for a, s in zip(axes, block.read, strict=True))
            raise InputError(
                f"the image has NaN or Inf pixels (or values too large for float32) in the region {where}: expected "
                "finite values; replace them (e.g. numpy.nan_to_num) and rerun (with overwrite for a partial output)"
            )
        x = np.pad(x, ((0, 0), *block.pad), mode="reflect") if any(sum(p) for p in block.pad) else x
        while True:
            try:
                y = self._blend(x, block)
                break
            except (torch.OutOfMemoryError, RuntimeError) as err:
                if not is_out_of_memory(err):
                    raise
                self._shrink()
        if self.norm is not None:
            y = self.norm.invert(y, channel_axis=0)
        return cast(y, self.dtype)

    def _blend(self, x: np.ndarray, block: Block) -> np.ndarray:
        if all(t <= c for t, c in zip(block.tile, self.tile, strict=True)):
            tiles = block.tiles()
        else:  # the tile was shrunk after an out-of-memory error
            tiles = tile_slices(*plan_tiles(block.padded_shape, self.tile, self.overlap, self.multiple))
        blender = Blender(self.out_channels, block.padded_shape, self.overlap, self.window)
        groups = batches(tiles, self.batch_size)

        def run(group: list) -> np.ndarray:
            return self.infer(np.stack([x[(slice(None), *t)] for t in group]))

        workers, threads = self.schedule(len(groups))
        with _torch_threads(self.device, threads), _mapper(workers) as mapped:
            for group, ys in zip(groups, mapped(run, groups), strict=True):  # blended in plan order
                for t, y in zip(group, ys, strict=True):
                    blender.add(t, y)
        return blender.result(block.crop)

    def schedule(self, groups: int) -> tuple[int, int]:
        """(tile batches run at once, torch threads each) for a block of ``groups`` batches; on accelerators one
        stream of batches, torch's CPU threads left as they are (0)."""
        return cpu_schedule(groups, self.threads) if self.device.type == "cpu" else (1, 0)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """The model on a batch ``(N, C, *tile)`` in model units, as float32 numpy."""
        t = to_device(torch.from_numpy(np.ascontiguousarray(batch)), self.device)
        with torch.inference_mode(), autocast(self.device):
            y = self.model(t)
        return y.float().cpu().numpy()

    def _shrink(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if max(self.tile) <= self.multiple:
            raise InputError(
                f"out of memory on {self.device} even with {self.multiple}-voxel tiles: expected a device with more "
                "free memory; close other programs using it, use a smaller model, or run on the CPU (device='cpu')"
            )
        old = self.tile
        self.tile = tuple(snap_up(t // 2, self.multiple) for t in old)
        emit(
            self.progress,
            ProgressEvent(
                "restore",
                0,
                0,
                message=f"out of memory on {self.device}: retrying the block with smaller tiles "
                f"({'x'.join(map(str, old))} -> {'x'.join(map(str, self.tile))} voxels)",
            ),
        )


_LAST: list[tuple[weakref.ref, torch.nn.Module]] = []  # the last CPU copy: (the caller's model, its copy)
_LAST_LOCK = threading.RLock()  # re-entrant: _forget may run from a garbage collection inside it


def prepared(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """A copy of ``model`` on ``device`` in eval mode and channels-last layout; the caller's model never changes.

    On the CPU the last copy is reused while the caller's model holds the same weights, value for value (a napari
    user restores region after region with one model: comparing costs a tenth of copying, which took 4 % of
    restoring a 154 x 512 region with ``unet-s``).
    """
    if device.type == "cpu":
        with _LAST_LOCK:
            if _LAST and _LAST[0][0]() is model and _same_weights(model, _LAST[0][1]):
                return _LAST[0][1]
    copied = copy.deepcopy(model).to(device, memory_format=channels_last(model.config.spatial_dims)).eval()
    if device.type == "cpu":
        with _LAST_LOCK:
            _LAST[:] = [(weakref.ref(model, _forget), copied)]
    return copied


def _same_weights(model: torch.nn.Module, copied: torch.nn.Module) -> bool:
    """Whether ``copied`` holds ``model``'s parameters and buffers, value for value (whatever may have changed them:
    an optimiser step, ``load_state_dict``, an assignment to ``.data``)."""
    a = list(itertools.chain(model.parameters(), model.buffers()))
    b = list(itertools.chain(copied.parameters(), copied.buffers()))
    return len(a) == len(b) and all(
        x.shape == y.shape and x.dtype == y.dtype and x.device == y.device and torch.equal(x, y)
        for x, y in zip(a, b, strict=True)
    )


def _forget(source: weakref.ref) -> None:
    """The caller's model is gone: so goes its copy."""
    with _LAST_LOCK:
        if _LAST and _LAST[0][0] is source:
            _LAST.clear()


@contextlib.contextmanager
def _torch_threads(device: torch.device, threads: int) -> Iterator[None]:
    """On the CPU, torch ops use ``threads`` threads inside the block (set before any tile thread starts)."""
    if device.type != "cpu" or threads < 1:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _mapper(workers: int) -> Iterator[Callable]:
    """``map`` over ``workers`` threads; in the caller's thread when one (no pool to start)."""
    if workers == 1:
        yield map
        return
    with ThreadPoolExecutor(workers) as pool:
        yield pool.map


def is_out_of_memory(err: BaseException) -> bool:
    """CUDA's ``OutOfMemoryError``, or the RuntimeError MPS and some CUDA paths raise when memory runs out."""
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def cast(y: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float32 model output to the output dtype: integers are rounded and clipped to the dtype's range."""
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        # the bounds as floats of y's type: 2**31 - 1 becomes 2**31 in float32, which would wrap round in the cast
        lo, hi = (y.dtype.type(v) for v in (info.min, info.max))
        hi = np.nextafter(hi, y.dtype.type(0)) if int(hi) > info.max else hi
        return np.clip(np.rint(y), lo, hi).astype(dtype)
    if dtype.itemsize < 4:
        info = np.finfo(dtype)
        y = np.clip(y, info.min, info.max)
    return y.astype(dtype, copy=False)
