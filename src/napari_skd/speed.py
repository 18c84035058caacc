"""Speed of the model presets on this machine: restore throughput, training and distillation steps per second, and
the share of a dense matmul's speed that ``restore`` reaches. ``napari-skd bench --presets`` prints this table and
``benchmarks/restore_speed.py`` writes it to docs/benchmarks.md, so both measure the same way.

Every rate comes from the public entry points (``restore``, ``train_teacher``, ``distill``) on real image content:
start-up (reading, statistics, the first step) is left out, nothing else is.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from .checkpoint import Checkpoint, save_checkpoint
from .distillation.api import distill, train_teacher
from .models import build_model, count_flops, count_params
from .normalize import Normalization
from .progress import ProgressEvent
from .restoration.api import restore
from .restoration.options import DEFAULTS
from .restoration.plan import plan_blocks

#: The teacher every preset's distillation step is timed against (the recommended CPU teacher).
BENCH_TEACHER = "teacher-tiny"
#: Training batch of the timed steps: 8 patches of 64 x 64, the demo's setting.
BATCH, PATCH = 8, 64


def matmul_peak(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """Dense float32 matmul GFLOP/s on ``device`` with torch's current threads (best of ``repeats``)."""
    a = torch.rand(n, n, device=device)
    a @ a
    return 2 * n**3 / best_of(repeats, lambda: a @ a, device) / 1e9


def best_of(repeats: int, fn: Callable[[], object], device: torch.device | None = None) -> float:
    """Shortest wall time of ``repeats`` calls of ``fn``, in seconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times)


def alternating(repeats: int, fns: dict[str, Callable[[], object]], device: torch.device | None = None) -> dict:
    """Wall times (s) of each of ``fns`` over ``repeats`` rounds, one call of each per round, so that a change of
    the machine's load reaches every function alike; ``{name: [seconds, ...]}``."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(best_of(1, fn, device))
    return times


def mosaic(image: np.ndarray, shape: int | tuple[int, int]) -> np.ndarray:
    """A float32 image of ``shape`` (or ``shape`` x ``shape``) of real content: the 2D ``image`` mirrored to cover
    it."""
    shape = (shape, shape) if isinstance(shape, int) else shape
    reps = [-(-s // n) for s, n in zip(shape, image.shape, strict=True)]
    pad = [(0, (r - 1) * n) for r, n in zip(reps, image.shape, strict=True)]
    return np.pad(image, pad, mode="symmetric")[: shape[0], : shape[1]].astype(np.float32)


def bench_side(flops_per_pixel: float) -> int:
    """Image side for timing ``restore``: large enough to fill every core, small enough for seconds per run."""
    return 2048 if flops_per_pixel < 1e5 else 1024 if flops_per_pixel < 5e5 else 512


def executed_pixels(side: int) -> int:
    """Pixels the model runs on when ``restore`` tiles a ``side``-square image with the default plan."""
    d = DEFAULTS[2]
    return sum(len(b.tiles()) * int(np.prod(b.tile)) for b in plan_blocks((side, side), d["chunks"], d["tile"],
                                                                          d["overlap"]))  # fmt: skip


def restore_rate(ck: Checkpoint, image: np.ndarray, device: torch.device, repeats: int = 2) -> float:
    """Seconds of ``restore`` on a whole 2D image, end to end (normalise, tile, blend, back to data units)."""
    return best_of(repeats, lambda: restore(image, ck, axes="YX", device=str(device)), device)


def step_rate(run: Callable[[Callable[[ProgressEvent], None]], object], skip: int = 1) -> float:
    """Training steps per second of ``run(progress)``, timed from the end of step ``skip`` to the step before the
    last (the last step also validates)."""
    stamps: dict[int, float] = {}

    def note(event: ProgressEvent) -> None:
        if event.phase == "train":
            stamps[event.step] = time.perf_counter()

    run(note)
    last = max(stamps) - 1
    return (last - skip) / (stamps[last] - stamps[skip])


def train_rates(
    preset: str, image: np.ndarray, device: torch.device, teacher: Path, steps: int = 8
) -> tuple[float, float]:
    """Steps/s of ``preset`` trained alone (supervised L1) and distilled (``skd``) from the checkpoint ``teacher``."""
    data = {"clean": image, "axes": "YX", "degradation": {"kind": "gaussian", "sigma": 0.1}, "patch_size": PATCH,
            "batch_size": BATCH, "val_patches": 1}  # fmt: skip
    train = {"steps": steps, "val_every": 10**6, "checkpoint_every": 10**6, "device": str(device), "warmup_steps": 1}
    with tempfile.TemporaryDirectory(prefix="skd-speed-") as tmp:
        alone = step_rate(
            lambda p: train_teacher(
                {"data": data, "model": preset, "output": f"{tmp}/a.pt", "train": train}, progress=p
            )
        )
        job = {"data": data, "teacher": str(teacher), "student": preset, "output": f"{tmp}/s.pt", "train": train}
        distilled = step_rate(lambda p: distill(job, progress=p))
    return alone, distilled


def preset_rows(
    presets: Sequence[str],
    image: np.ndarray,
    device: torch.device,
    *,
    train_steps: int = 8,
    log: Callable[[str], None] = lambda _: None,
) -> list[dict]:
    """One row per preset: params, GFLOP at 256 x 256, restore Mpx/s and GFLOP/s, training and distillation steps/s.

    Models have random weights (speed does not depend on them); the teacher of every distillation is
    ``BENCH_TEACHER``.
    """
    norm = Normalization(low=float(np.percentile(image, 1)), high=float(np.percentile(image, 99.8)))
    rows = []
    with tempfile.TemporaryDirectory(prefix="skd-speed-") as tmp:
        torch.manual_seed(0)
        teacher = save_checkpoint(Path(tmp) / "teacher.pt", build_model(BENCH_TEACHER), norm=norm)
        for name in presets:
            torch.manual_seed(0)
            model = build_model(name)
            flops = count_flops(model, 256)
            side = bench_side(flops / 256**2)
            ck = Checkpoint(model=model.eval(), config=model.config, role="student", norm=norm)
            log(f"{name}: restore {side} x {side}")
            seconds = restore_rate(ck, mosaic(image, side), device)
            log(f"{name}: training and distillation steps")
            steps = train_steps if flops / 256**2 < 1e6 else 3  # the published teacher: seconds per step on a CPU
            alone, distilled = train_rates(name, image, device, teacher, steps)
            rows.append({
                "preset": name, "arch": model.config.arch, "params": count_params(model), "gflop_256": flops / 1e9,
                "side": side, "restore_mpx_s": side**2 / seconds / 1e6,
                "restore_gflop_s": flops / 256**2 * executed_pixels(side) / seconds / 1e9,
                "train_steps_s": alone, "distill_steps_s": distilled,
            })  # fmt: skip
    return rows


def format_table(rows: list[dict], peak: float) -> list[str]:
    """Markdown table of :func:`preset_rows` with each preset's share of the matmul ``peak`` (GFLOP/s)."""
    lines = [
        "| preset | arch | params | GFLOP at 256² | restore Mpx/s | restore GFLOP/s | of matmul peak "
        f"| train steps/s | distil steps/s (teacher {BENCH_TEACHER}) | distil / alone step time |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['preset']}` | {r['arch']} | {r['params']:,} | {r['gflop_256']:.2f} | {r['restore_mpx_s']:.3f} "
            f"| {r['restore_gflop_s']:.1f} | {r['restore_gflop_s'] / peak:.0%} | {r['train_steps_s']:.2f} "
            f"| {r['distill_steps_s']:.2f} | {r['train_steps_s'] / r['distill_steps_s']:.1f}x |"
        )
    return lines
