"""Fidelity QC: run the teacher on a sample of a restored output's blocks and measure how far the student departs.

The student is the fast model that runs on the whole image; the teacher is the reference. After a restoration,
every output block gets a cheap hardness score: the student's residual, the mean |input - output| in normalised
units (how much it changed the block). The sample holds the hardest half (at least one block) and a seeded random
draw from the rest, ``fraction`` of the blocks in all (at least one). The teacher restores each sampled block with
the same tiling, and :mod:`.fidelity` records the PSNR and largest difference per block.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..checkpoint import Checkpoint, load_checkpoint
from ..device import resolve_device
from ..errors import InputError
from ..normalize import Normalization
from ..progress import Cancel, ProgressEvent, ProgressFn, emit
from .fidelity import BlockFidelity, FidelityReport, block_psnr
from .intensities import effective_norm
from .layout import Layout, OutputBlock, make_layout, read_region
from .plan import plan_blocks, snap_up
from .prepare import PreparedRestore, make_restorer

#: Seed of the random part of the sample (recorded with the report).
SEED = 0

StudentBlock = Callable[[OutputBlock], np.ndarray]  # an output block as stored: (channels, *spatial)


def qc_teacher_for(job: PreparedRestore, teacher: Any) -> Checkpoint | None:
    """The QC teacher (a path or a loaded checkpoint) after checking that it can restore this job's blocks."""
    if teacher is None:
        return None
    ckpt = load_qc_teacher(teacher)
    _teacher_blocks(job, ckpt)
    return ckpt


def load_qc_teacher(teacher: Any) -> Checkpoint:
    """A QC teacher given as a path or a loaded checkpoint."""
    return teacher if isinstance(teacher, Checkpoint) else load_checkpoint(teacher)


def check_fidelity(
    job: PreparedRestore,
    student: StudentBlock,
    teacher: Checkpoint,
    fraction: float,
    *,
    seed: int = SEED,
    progress: ProgressFn | None = None,
    cancel: Cancel | None = None,
) -> FidelityReport | None:
    """Compare the student's restored blocks (``student(item)``) with the teacher's on a sample; None when stopped."""
    if not 0 < fraction <= 1:
        raise InputError(f"qc_fraction {fraction!r} is not valid: expected a fraction of the blocks in (0, 1]")
    t0 = time.perf_counter()
    layout, items = job.layout, job.items
    teacher_blocks = _teacher_blocks(job, teacher)
    norm = job.norm
    emit(progress, ProgressEvent("qc", 0, len(items), message=f"QC: the student's residual on {len(items)} blocks"))
    residuals = []
    for step, item in enumerate(items, 1):
        if cancel is not None and cancel.is_set():
            return None
        region = _channels_first(layout, _compute(job.canonical.data[layout.index(item.outer, item.block.out)]))
        residuals.append(_residual(_units(region, norm), _units(student(item), norm)))
        emit(progress, ProgressEvent("qc", step, len(items)))
    sample = choose_blocks(residuals, fraction, seed)
    dev = job.dev if job.dev is not None else resolve_device(job.device)[0]
    options = dataclasses.replace(job.options, tile=teacher_blocks.tile, dtype="float32")
    restorer = make_restorer(teacher, _teacher_norm(job, teacher), dev, options)
    report = FidelityReport(
        teacher=teacher.hash,
        teacher_name=teacher.path.name if teacher.path is not None else f"{teacher.config.arch} teacher",
        student=job.ckpt.hash,
        fraction=float(fraction),
        seed=seed,
        blocks_total=len(items),
        axes="".join(a for a in layout.axes if a != "C"),
        block_shape=dict(zip(layout.spatial, job.options.chunks, strict=True)),
        shape={a: n for a, n in zip(layout.axes, layout.out_shape, strict=True) if a != "C"},
    )
    for i, (index, chosen) in enumerate(sample):
        if cancel is not None and cancel.is_set():
            return None
        item = items[index]
        where = OutputBlock(item.outer, teacher_blocks.blocks[item.block.index])
        emit(
            progress, ProgressEvent("qc", i, len(sample), message=f"QC: the teacher on block {i + 1} of {len(sample)}")
        )
        reference = restorer(read_region(job.canonical.data, layout, where), where.block)
        psnr, max_abs = block_psnr(_units(student(item), norm), _units(reference, norm))
        position = {a: o for a, o in zip(layout.outer, item.outer, strict=True)} | {
            a: [s.start, s.stop] for a, s in zip(layout.spatial, item.block.out, strict=True)
        }
        report.blocks.append(BlockFidelity(item.key, position, round(psnr, 3), max_abs, residuals[index], chosen))
    report.seconds = round(time.perf_counter() - t0, 3)
    emit(progress, ProgressEvent("qc", len(sample), len(sample), message=report.lines(worst=0)[0]))
    return report


def check_result(
    job: PreparedRestore,
    result: np.ndarray,
    teacher: Checkpoint,
    fraction: float,
    *,
    progress: ProgressFn | None = None,
    cancel: Cancel | None = None,
) -> FidelityReport | None:
    """:func:`check_fidelity` of an in-memory result in the input's axis order (as ``restore`` returns it)."""
    canonical = result.transpose([job.image.axes.index(a) for a in job.canonical.axes])
    return check_fidelity(job, stored_block(canonical, job.layout), teacher, fraction, progress=progress, cancel=cancel)


def choose_blocks(hardness: list[float], fraction: float, seed: int = SEED) -> list[tuple[int, str]]:
    """``ceil(fraction * n)`` block indices (at least one), in order: the hardest half (at least one) by
    ``hardness``, and a seeded random draw from the others; each with why it was chosen."""
    n = len(hardness)
    k = min(n, max(1, math.ceil(fraction * n - 1e-9)))
    hardest = sorted(range(n), key=lambda i: (-hardness[i], i))[: max(1, math.ceil(k / 2))]
    rest = sorted(set(range(n)) - set(hardest))
    drawn = np.random.default_rng(seed).choice(rest, size=k - len(hardest), replace=False) if rest else []
    chosen = {i: "hardest" for i in hardest} | {int(i): "random" for i in drawn}
    return sorted(chosen.items())


@dataclasses.dataclass(frozen=True)
class _TeacherPlan:
    tile: tuple[int, ...]
    blocks: dict[tuple[int, ...], Any]


def _teacher_blocks(job: PreparedRestore, teacher: Checkpoint) -> _TeacherPlan:
    """The output blocks re-planned for the teacher's size multiple (same outputs and halos, its own tiles)."""
    cfg, layout, o = teacher.config, job.layout, job.options
    c = job.canonical
    try:
        theirs = make_layout(c.axes, c.shape, cfg.in_channels, cfg.out_channels, cfg.spatial_dims)
    except InputError as err:
        raise InputError(f"the QC teacher does not fit this image: {err}") from None
    if (theirs.spatial, theirs.channels_to_model, theirs.out_channels) != (
        layout.spatial,
        layout.channels_to_model,
        layout.out_channels,
    ):
        raise InputError(
            f"the QC teacher ({cfg.spatial_dims}D, {cfg.in_channels} -> {cfg.out_channels} channels) does not match "
            f"the student ({job.ckpt.config.spatial_dims}D, {job.ckpt.config.in_channels} -> "
            f"{job.ckpt.config.out_channels} channels): expected the teacher the student was distilled from"
        )
    tile = tuple(snap_up(t, cfg.multiple) for t in o.tile)
    blocks = plan_blocks(layout.spatial_shape, o.chunks, tile, o.overlap, o.overlap, cfg.multiple)
    return _TeacherPlan(tile, {b.index: b for b in blocks})


def _teacher_norm(job: PreparedRestore, teacher: Checkpoint) -> Normalization | None:
    """The teacher's own normalisation, or the input's percentiles when the job renormalises or the teacher is a
    generalist (which maps every input by its own percentiles)."""
    if teacher.per_input and not job.ckpt.per_input:
        axes = job.canonical.axes
        return effective_norm(
            job.canonical.data, teacher.norm, "renormalize", None, axes.index("C") if "C" in axes else None
        )
    if job.norm is not job.ckpt.norm or teacher.norm is None:  # renormalised: the input's own percentiles
        return job.norm
    return teacher.norm


def _units(values: np.ndarray, norm: Normalization | None) -> np.ndarray:
    x = np.asarray(values, dtype=np.float32)
    return norm.apply(x, channel_axis=0) if norm is not None else x


def _residual(region: np.ndarray, output: np.ndarray) -> float:
    """Mean |input - output| (channel means when the model changes the channel count)."""
    if region.shape != output.shape:
        region, output = region.mean(axis=0), output.mean(axis=0)
    return round(float(np.mean(np.abs(region.astype(np.float64) - output))), 6)


def _compute(values: Any) -> np.ndarray:
    return np.asarray(values.compute(scheduler="synchronous") if hasattr(values, "compute") else values)


def _channels_first(layout: Layout, values: np.ndarray) -> np.ndarray:
    return values if layout.channels_to_model else values[np.newaxis]


def stored_block(array: Any, layout: Layout) -> StudentBlock:
    """Read an output block from an output array (in memory or a store's level 0) as ``(channels, *spatial)``."""
    return lambda item: _channels_first(layout, _compute(array[layout.index(item.outer, item.block.out)]))
