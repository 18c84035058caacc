"""Two-level tiling plan: output blocks aligned to the output chunks, and model tiles inside each block's region.

Pure functions of shapes (no torch, no pixels), for 2D (YX) or 3D (ZYX) spatial layouts. Coordinates are
per spatial axis; a plan never looks at the axes that are iterated outside (T, C one by one, Z for 2D models).

Per axis of length ``n``, with block (chunk) length ``c``, halo ``h``, overlap ``v <= h``, largest tile ``T``
(a multiple of the model's multiple ``m``):

1. **Blocks** start at ``0, c, 2c, ...``; block ``k`` writes ``out = [k*c, min((k+1)*c, n))``. The ``out`` ranges
   partition ``[0, n)``: every output voxel belongs to exactly one block, and every block is one output chunk.
2. The block's **padded region** starts at ``out.start - h`` and has length ``P = max(L, t)`` where
   ``L = len(out) + 2h``. Its part inside the image, ``read``, is what is read; the rest (``pad`` before/after,
   ``read + pad == P``) is filled by reflect padding. The output of the block is the region's ``crop`` at offset
   ``h``: every output voxel sees at least ``h`` voxels of context (real or reflected) on every side.
3. **Tiles** all have the same length ``t``: a multiple of ``m``, at most ``T``, and never larger than needed: the
   fewest tiles ``k`` of length at most ``T`` that cover ``L`` with overlaps ``>= v`` are used, and ``t`` is the
   smallest multiple of ``m`` for which ``k`` tiles cover it. Tile starts are spread evenly over ``[0, P - t]``, so
   tiles lie inside the padded region, cover it, and neighbours overlap by at least ``v``.
4. Tiles are batched in a fixed order (C order over the tile grid), so a block's result never depends on which
   other blocks ran before it: a resumed or distributed run gives the same bytes.
5. On the CPU, :func:`cpu_schedule` shares the threads out among a block's tile batches: one batch per thread while
   there are enough of them, else each batch (a small image: its single tile) runs on several torch threads.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

Slices = tuple[slice, ...]


@dataclass(frozen=True)
class Block:
    """One output block (one output chunk) and the region of the image that produces it."""

    index: tuple[int, ...]  # position in the block grid
    out: Slices  # image coordinates this block writes
    read: Slices  # image coordinates read: out + halo, clipped to the image
    pad: tuple[tuple[int, int], ...]  # reflect padding (before, after) that completes the padded region
    crop: Slices  # where ``out`` lies inside the padded region
    tile: tuple[int, ...]  # tile shape, the same for every tile of this block
    tile_starts: tuple[tuple[int, ...], ...]  # per axis, tile start offsets inside the padded region

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the output block."""
        return tuple(s.stop - s.start for s in self.out)

    @property
    def padded_shape(self) -> tuple[int, ...]:
        """Shape of the padded region (read region plus reflect padding)."""
        return tuple(s.stop - s.start + a + b for s, (a, b) in zip(self.read, self.pad, strict=True))

    def tiles(self) -> list[Slices]:
        """Every tile as slices of the padded region, in C order over the tile grid."""
        return tile_slices(self.tile, self.tile_starts)


def snap_up(value: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is ``>= value`` (and at least ``multiple``)."""
    return max(multiple, -(-value // multiple) * multiple)


def tile_length(length: int, max_tile: int, overlap: int, multiple: int) -> int:
    """Length of the tiles that cover ``length`` voxels: a multiple of ``multiple``, at most ``snap_up(max_tile)``.

    One tile when the region fits; otherwise the fewest tiles that can cover it with overlaps ``>= overlap``, each
    as short as that count allows.
    """
    top = snap_up(max_tile, multiple)
    if top <= overlap:
        raise ValueError(f"tile {top} must exceed the overlap {overlap}")
    if length <= top:
        return snap_up(length, multiple)
    count = math.ceil((length - overlap) / (top - overlap))
    return snap_up(math.ceil((length - overlap) / count) + overlap, multiple)


def tile_starts(length: int, tile: int, overlap: int) -> tuple[int, ...]:
    """Starts of ``tile``-long tiles spread evenly over ``[0, length - tile]``; neighbours overlap by >= overlap."""
    if length <= tile:
        return (0,)
    count = math.ceil((length - overlap) / (tile - overlap))
    span = length - tile
    return tuple(round(i * span / (count - 1)) for i in range(count))


def tile_slices(tile: Sequence[int], starts: Sequence[Sequence[int]]) -> list[Slices]:
    """The tile grid of a padded region: the product of the per-axis starts, as slices (C order)."""
    return [tuple(slice(s, s + t) for s, t in zip(corner, tile, strict=True)) for corner in itertools.product(*starts)]


def plan_tiles(padded_shape: Sequence[int], tile: Sequence[int], overlap: int, multiple: int) -> tuple[tuple, tuple]:
    """Tile shape and per-axis starts covering a padded region (also used to re-plan with a smaller tile)."""
    shape = tuple(tile_length(p, t, overlap, multiple) for p, t in zip(padded_shape, tile, strict=True))
    starts = tuple(tile_starts(p, s, overlap) for p, s in zip(padded_shape, shape, strict=True))
    return shape, starts


def plan_blocks(
    shape: Sequence[int],
    chunks: Sequence[int],
    tile: Sequence[int],
    overlap: int,
    halo: int | None = None,
    multiple: int = 8,
) -> list[Block]:
    """Every block of an image of spatial ``shape``, in C order over the block grid (see the module docstring).

    ``chunks`` is the output chunk (block) shape, ``tile`` the largest tile shape, ``halo`` defaults to ``overlap``.
    """
    halo = overlap if halo is None else halo
    d = len(shape)
    if not (len(chunks) == len(tile) == d) or d not in (2, 3):
        raise ValueError(f"shape, chunks and tile need 2 or 3 entries each, got {shape}, {chunks}, {tile}")
    if halo < overlap or overlap < 0:
        raise ValueError(f"need 0 <= overlap <= halo, got overlap={overlap}, halo={halo}")
    if min(shape) < 1 or min(chunks) < 1:
        raise ValueError(f"shape and chunks must be positive, got {shape}, {chunks}")
    per_axis = [
        list(_axis_blocks(n, c, t, overlap, halo, multiple)) for n, c, t in zip(shape, chunks, tile, strict=True)
    ]
    blocks = []
    grid = itertools.product(*(range(len(a)) for a in per_axis))
    for index, parts in zip(grid, itertools.product(*per_axis), strict=True):
        out, read, pad, crop, length = zip(*parts, strict=True)
        tiles, starts = plan_tiles(length, tile, overlap, multiple)
        blocks.append(Block(index, out, read, pad, crop, tiles, starts))
    return blocks


def _axis_blocks(n: int, chunk: int, tile: int, overlap: int, halo: int, multiple: int) -> Iterator[tuple]:
    """Per axis: (out, read, pad, crop, padded length) of each block."""
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        length = stop - start + 2 * halo
        length = max(length, tile_length(length, tile, overlap, multiple))
        lo, hi = start - halo, start - halo + length
        read = slice(max(lo, 0), min(hi, n))
        pad = (read.start - lo, hi - read.stop)
        yield slice(start, stop), read, pad, slice(halo, halo + stop - start), length


def batches(items: Sequence, size: int) -> list[list]:
    """Consecutive groups of at most ``size`` items, in order."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def cpu_schedule(groups: int, threads: int) -> tuple[int, int]:
    """How a block's ``groups`` tile batches share ``threads`` CPU threads: (batches run at once, torch threads each).

    With at least as many batches as threads, each runs on one torch thread, so the bytes do not depend on the
    thread count. With fewer (a small image is often a single tile), the threads are shared out among them: one
    tile then runs on every core (torch's intra-op parallelism), and its rounding depends on the thread count.
    """
    if groups < 1 or threads < 1:
        raise ValueError(f"need at least one batch and one thread, got {groups} and {threads}")
    workers = min(groups, threads)
    return workers, threads // workers
