"""Restore one block: normalise, reflect-pad, run the model on batched tiles, blend, crop, back to data units.

:class:`BlockRestorer` holds the model once on its device; the local runner and every dask worker use it the same
way, so a block's bytes do not depend on where or when it ran. On the CPU every tile runs alone (batch size 1) on one
torch thread, and tiles run in parallel on as many Python threads as torch had: a convolution's rounding depends on
how many threads split it and on the batch, so this keeps the bytes identical between a local run, a resumed run
and single-threaded dask workers, whatever the core count. On GPUs tiles run in batches of ``batch_size``.
On out-of-memory it frees the device cache, halves the tile and retries the block (and says so through ``progress``).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..device import autocast, channels_last, to_device
from ..errors import InputError
from ..normalize import Normalization
from ..progress import ProgressEvent, ProgressFn, emit
from .blend import Blender
from .options import Options, tiles_per_call
from .plan import Block, batches, plan_tiles, snap_up, tile_slices


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
        layout = channels_last(model.config.spatial_dims)
        model = copy.deepcopy(model).to(device, memory_format=layout)  # never change the caller's model
        self.model, self.norm, self.device = model.eval(), norm, device
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

        with _one_torch_thread(self.device), ThreadPoolExecutor(min(self.threads, len(groups))) as pool:
            for group, ys in zip(groups, pool.map(run, groups), strict=True):  # blended in plan order
                for t, y in zip(group, ys, strict=True):
                    blender.add(t, y)
        return blender.result(block.crop)

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


@contextlib.contextmanager
def _one_torch_thread(device: torch.device) -> Iterator[None]:
    """On the CPU, torch ops use one thread inside the block (parallelism comes from concurrent batches)."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
