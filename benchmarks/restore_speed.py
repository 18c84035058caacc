"""Restoration speed and memory: every preset's speed, tiled vs whole-image, streaming a >= 2 GB volume, dask workers.

Every ratio is measured within one run of its part (``--parts``), on one machine:

- every model preset (``napari_skd.speed``, the table ``napari-skd bench --presets`` prints): restore Mpx/s and
  share of the dense matmul peak, training and distillation steps/s; the recommended CPU pair against the targets,
  and the U-Net students trained alone for the demo's step budget against TV denoising;
- throughput of ``restore`` (default plan: 2048 x 2048 blocks, tiles up to 1024, overlap 32) against one whole-image
  forward pass of the same model on the same image (target: tiled >= 85 % of whole);
- small inputs (``small``): ``restore`` of a 154 x 512 and a 512 x 512 region in memory, what a napari user waits
  for, against one whole-image forward pass of the recommended CPU student (target: restore >= 80 % of it);
- peak RSS of a subprocess restoring a synthetic 2.01 GB uint16 zarr volume (60 x 4096 x 4096, slice-wise) against
  one restoring a single 2048 x 2048 slice with the same plan (target: flat, the difference <= 512 MB);
- 2 local dask workers against 1 (target >= 1.7x), timed from the first finished block to the last (no start-up).

    python benchmarks/restore_speed.py                         # full run, about 30 min on 2 CPU cores
    python benchmarks/restore_speed.py --quick                 # smoke run: small sizes, prints, writes nothing
    python benchmarks/restore_speed.py --device cuda --parts throughput   # on a GPU (see gpu_check.sh)
    python benchmarks/restore_speed.py --parts small           # small inputs only, about 1 min
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
import zarr

from _report import machine, write_section
from napari_skd import restore
from napari_skd.checkpoint import load_checkpoint, save_checkpoint
from napari_skd.device import autocast, channels_last, resolve_device, to_device
from napari_skd.models import ModelConfig, build_model, count_flops
from napari_skd.normalize import Normalization
from napari_skd.restoration.options import DEFAULTS
from napari_skd.restoration.plan import cpu_schedule, plan_blocks
from napari_skd.samples import load_sample
from napari_skd.speed import alternating, best_of, executed_pixels, matmul_peak, mosaic

PARTS = ("presets", "throughput", "small", "memory", "dask")
RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
#: The recommended CPU pair (docs/benchmarks.md, README): what make demo trains and distils.
CPU_TEACHER, CPU_STUDENT = "teacher-tiny", "unet-s"
#: CAREamics 0.3.5 CARE U-Net on this 2-core CPU, measured by the reviewer of issue 10 (not in this run: CAREamics
#: needs torchvision, which does not install beside torch 2.13 here).
CAREAMICS = {"predict_mpx_s": 0.49, "forward_mpx_s": 0.87, "train_steps_s": 3.9}
#: A 1-conv-per-level U-Net (dim 4) so that 1e9 voxels stream through 2 CPU cores in minutes.
STREAM_MODEL = ModelConfig(arch="unet", dim=4, num_blocks=(1, 1, 1, 1), num_refinement_blocks=0)


def nuclei_image(shape: tuple[int, int]) -> np.ndarray:
    """Real content of any 2D shape: the nuclei sample mirrored to cover it."""
    return mosaic(load_sample("nuclei2d")[0], shape)


def checkpoints(work: Path) -> dict[str, Path]:
    torch.manual_seed(0)
    base, _ = load_sample("nuclei2d")
    norm = Normalization(low=float(base.min()), high=float(base.max()))
    paths = {"unet-xs": save_checkpoint(work / "unet-xs.pt", build_model("unet-xs"), norm=norm)}
    torch.manual_seed(0)
    paths[CPU_STUDENT] = save_checkpoint(work / f"{CPU_STUDENT}.pt", build_model(CPU_STUDENT), norm=norm)
    paths["stream"] = save_checkpoint(work / "stream.pt", build_model(STREAM_MODEL), norm=norm)
    return paths


def whole_image(c, image: np.ndarray, device: torch.device) -> None:
    """One forward pass of the whole image (normalised, on the device): the baseline tiling is compared with."""
    model = c.model.to(device)
    x = torch.from_numpy(c.norm.apply(image.astype(np.float32)))[None, None].to(device)
    with torch.inference_mode(), autocast(device):
        c.norm.invert(model(x).float().cpu().numpy())


def throughput(paths: dict[str, Path], device: torch.device, quick: bool) -> tuple[str, dict]:
    size = 1024 if quick else 2048
    repeats = 1 if quick else 2
    image = nuclei_image((size, size))
    kw = {"device": str(device)}
    ck = {"unet-xs": load_checkpoint(paths["unet-xs"])}
    whole_s = best_of(repeats, lambda: whole_image(ck["unet-xs"], image, device), device)
    tiled_s = best_of(repeats, lambda: restore(image, ck["unet-xs"], **kw), device)
    px = size * size
    executed = executed_pixels(size)
    fpp = {k: count_flops(c.model, 256) / 256**2 for k, c in ck.items()}
    peak = matmul_peak(device)
    r = {
        "size": size,
        "whole_mpx_s": px / whole_s / 1e6,
        "tiled_mpx_s": px / tiled_s / 1e6,
        "tiled_over_whole": whole_s / tiled_s,
        "work_fraction": px / executed,
        "peak_gflops": peak,
        "whole_gflops": fpp["unet-xs"] * px / whole_s / 1e9,
        "tiled_gflops": fpp["unet-xs"] * executed / tiled_s / 1e9,
    }
    md = [
        f"**Tiled vs whole image** (`unet-xs`, {size} x {size} nuclei mosaic, default plan: one 2048 block, tiles "
        f"up to 1024, overlap 32; {r['work_fraction']:.0%} of the executed voxels are output):",
        "",
        "| path | Mpx/s | GFLOP/s | of matmul peak |",
        "|---|---|---|---|",
        f"| whole image, one forward pass | {r['whole_mpx_s']:.3f} | {r['whole_gflops']:.1f} | "
        f"{r['whole_gflops'] / peak:.0%} |",
        f"| `restore` (tiled, blended) | {r['tiled_mpx_s']:.3f} | {r['tiled_gflops']:.1f} | "
        f"{r['tiled_gflops'] / peak:.0%} |",
        "",
        f"Tiled / whole throughput: **{r['tiled_over_whole']:.0%}** (target >= 85 %). Dense float32 matmul peak "
        f"({device}): {peak:.1f} GFLOP/s. On the CPU `restore` runs one tile per core, each on one torch thread, "
        "while the whole-image pass splits every operation over torch's threads, which scales worse for a small "
        "network: so tiling can beat the whole image despite its extra halo work.",
    ]
    return "\n".join(md), r


#: Small inputs: a region a napari user restores (154 x 512, the size issue 21 measured) and a whole 512² image.
SMALL = ((154, 512), (512, 512))
#: The small part before issue 21's item 2 (commit 5f6a8ff: one tile on one torch thread, pipeline threads, a fresh
#: model copy, glibc's default memory settings), this part's method on the 2-core Intel Xeon of the run in the docs.
SMALL_BEFORE = {"commit": "5f6a8ff", "whole_mpx_s": (1.89, 1.91), "restore_mpx_s": (0.83, 1.09),
                "ratio_best": (0.44, 0.57), "ratio_median": (0.48, 0.56)}  # fmt: skip


def small_plan(shape: tuple[int, int]) -> dict:
    """What ``restore`` runs for a small 2D image with the default plan: tiles, their size, the torch threads each."""
    d = DEFAULTS[2]
    (block,) = plan_blocks(shape, [min(c, n) for c, n in zip(d["chunks"], shape, strict=True)], d["tile"],
                           d["overlap"])  # fmt: skip
    workers, threads = cpu_schedule(len(block.tiles()), torch.get_num_threads())
    return {"tiles": len(block.tiles()), "tile": list(block.tile), "executed_px": len(block.tiles()) *
            int(np.prod(block.tile)), "tiles_at_once": workers, "threads_per_tile": threads}  # fmt: skip


def tile_forward(ck, tile: list[int], device: torch.device):
    """One forward pass of the model on a tile of ``tile`` pixels of real content, as ``restore`` runs it (a
    channels-last copy in eval mode, torch's threads): what ``restore`` of a one-tile image costs at the least."""
    model = copy.deepcopy(ck.model).to(device, memory_format=channels_last(2)).eval()
    x = to_device(torch.from_numpy(ck.norm.apply(nuclei_image(tuple(tile))))[None, None], device)

    def run() -> None:
        with torch.inference_mode(), autocast(device):
            model(x).float().cpu()

    return run


def small_row(ck, shape: tuple[int, int], device: torch.device, repeats: int) -> dict:
    """``restore`` in memory, the forward pass of its tile alone and one whole-image forward pass, alternated."""
    image, plan = nuclei_image(shape), small_plan(shape)
    run = {"whole": lambda: whole_image(ck, image, device), "tile": tile_forward(ck, plan["tile"], device),
           "restore": lambda: restore(image, ck, device=str(device))}  # fmt: skip
    for fn in run.values():  # warm-up: oneDNN primitives, the allocator
        fn()
    t = alternating(repeats, run, device)
    px = shape[0] * shape[1]
    best = {k: min(v) for k, v in t.items()}
    median = {k: float(np.median(v)) for k, v in t.items()}
    return {"shape": list(shape), "repeats": repeats, **plan, "seconds": t,
            "whole_mpx_s": px / best["whole"] / 1e6, "restore_mpx_s": px / best["restore"] / 1e6,
            "whole_ms": 1e3 * best["whole"], "tile_ms": 1e3 * best["tile"], "restore_ms": 1e3 * best["restore"],
            "ratio_best": best["whole"] / best["restore"], "ratio_median": median["whole"] / median["restore"],
            "tile_ratio": best["whole"] / best["tile"]}  # fmt: skip


def small_inputs(paths: dict[str, Path], device: torch.device, quick: bool) -> tuple[str, dict]:
    repeats = 3 if quick else 25
    ck = load_checkpoint(paths[CPU_STUDENT])
    rows = [small_row(ck, shape, device, repeats) for shape in SMALL]
    met = [row["ratio_best"] >= 0.8 for row in rows]
    b = SMALL_BEFORE
    r = {"model": CPU_STUDENT, "threads": torch.get_num_threads(), "rows": rows, "met": all(met), "before": b}
    table = [
        f"| {row['shape'][0]} x {row['shape'][1]} | {row['whole_ms']:.1f} ms, {row['whole_mpx_s']:.2f} Mpx/s "
        f"| {row['tiles']} x {row['tile'][0]} x {row['tile'][1]} on {row['threads_per_tile']} threads: "
        f"{row['tile_ms']:.1f} ms ({row['tile_ratio']:.0%}) | {row['restore_ms']:.1f} ms, "
        f"{row['restore_mpx_s']:.2f} Mpx/s | **{row['ratio_best']:.0%}** | {row['ratio_median']:.0%} "
        f"| {'met' if ok else 'missed'} |"
        for row, ok in zip(rows, met, strict=True)
    ]
    md = [
        f"**Small inputs** (`{CPU_STUDENT}`, random weights, nuclei mosaic): `restore(image, checkpoint)` in memory "
        "with the default plan against one forward pass of the whole image (normalised, torch's default "
        f"{r['threads']} threads), and the forward pass of the one tile `restore` runs (its reflected 32-pixel halo "
        f"included) alone; {repeats} alternated rounds, best and median:",
        "",
        "| image | whole image, one forward pass | `restore`'s tile alone (of whole) | `restore` | restore / whole "
        "(best) | (median) | target >= 80 % |",
        "|---|---|---|---|---:|---:|---|",
        *table,
        "",
        "A block of fewer tiles than threads runs each tile on several torch threads (`plan.cpu_schedule`), a "
        "single block runs without the reader and writer threads, a model used again is not copied again, and glibc "
        "keeps freed memory between model calls (`runner.keep_freed_memory`). What is left besides the tile's "
        "forward pass is the set-up (opening the array, the intensity check's percentiles, planning). The tile "
        "holds more pixels than the image: 32 reflected pixels on each side make a 154-row region 224 rows, so "
        "even a free set-up leaves `restore` at the tile's share of the whole image's speed. glibc's setting speeds "
        "up the whole-image pass too, since it runs in the same process.",
        "",
        f"Before these changes (commit {b['commit']}, the same method on the same machine type): `restore` at "
        f"{b['ratio_best'][0]:.0%} and {b['ratio_best'][1]:.0%} of the whole image (median {b['ratio_median'][0]:.0%}"
        f" and {b['ratio_median'][1]:.0%}), {b['restore_mpx_s'][0]} and {b['restore_mpx_s'][1]} Mpx/s, the whole "
        f"image {b['whole_mpx_s'][0]} and {b['whole_mpx_s'][1]} Mpx/s.",
    ]
    return "\n".join(md), r


def demo_budget() -> dict:
    """The student's training settings in ``make demo`` (docs/examples/demo_distill.yaml)."""
    job = yaml.safe_load((ROOT / "docs" / "examples" / "demo_distill.yaml").read_text())
    return {k: job["train"][k] for k in ("steps", "lr", "warmup_steps")}


def unets_against_tv(quick: bool) -> dict:
    """Held-out PSNR of the U-Net students trained alone (supervised L1) for the demo's budget, and of TV."""
    from skimage.restoration import denoise_tv_chambolle

    from napari_skd import train_teacher
    from napari_skd.data.degrade import DegradationConfig
    from napari_skd.evaluation import heldout_pair, psnr_ssim, restore_whole

    noise = {"kind": "poisson_gaussian", "peak": 20.0, "sigma": 0.05}
    budget = demo_budget() | ({"steps": 10} if quick else {})
    image, _ = load_sample("nuclei2d")
    data = {"clean": image, "axes": "YX", "degradation": noise, "patch_size": 64, "batch_size": 8, "val_fraction": 0.25}
    out: dict = {"budget": budget}
    with tempfile.TemporaryDirectory() as tmp:
        for preset in ("unet-xs", CPU_STUDENT):
            path = train_teacher({"data": data, "model": preset, "output": f"{tmp}/{preset}.pt",
                                  "train": {**budget, "val_every": budget["steps"], "seed": 0}})  # fmt: skip
            ck = load_checkpoint(path)
            clean, noisy = heldout_pair(image, ck.norm, DegradationConfig(**noise), 0.25, 1234)
            out[preset] = psnr_ssim(clean, restore_whole(ck.model, noisy))[0]
    out["input"] = psnr_ssim(clean, noisy)[0]
    out["tv"] = psnr_ssim(clean, denoise_tv_chambolle(noisy, weight=0.1))[0]
    return out


def presets(device: torch.device, quick: bool) -> tuple[str, dict]:
    from napari_skd.models import PRESETS
    from napari_skd.speed import BENCH_TEACHER, format_table, preset_rows

    image, _ = load_sample("nuclei2d")
    names = ["unet-xs", "teacher-tiny"] if quick else list(PRESETS)
    peak = matmul_peak(device)
    rows = preset_rows(names, image, device, train_steps=4 if quick else 10, log=lambda m: print(m, flush=True))
    unets = unets_against_tv(quick)
    by = {r["preset"]: r for r in rows}
    s, t = by.get(CPU_STUDENT, rows[0]), by[CPU_TEACHER]
    r = {"peak_gflops": peak, "rows": rows, "unets_vs_tv": unets, "careamics_reported": CAREAMICS,
         "cpu_pair": {"teacher": CPU_TEACHER, "student": s["preset"],
                      "restore_speedup": s["restore_mpx_s"] / t["restore_mpx_s"],
                      "restore_mpx_s": s["restore_mpx_s"], "share_of_peak": s["restore_gflop_s"] / peak,
                      "distill_over_alone": s["train_steps_s"] / s["distill_steps_s"]}}  # fmt: skip
    pair = r["cpu_pair"]
    ok = lambda good: "met" if good else "missed"  # noqa: E731
    b = unets["budget"]
    md = [
        f"**Every preset** (`napari_skd.speed`, the table `napari-skd bench --presets` prints). Restore: `restore()` "
        "end to end on a nuclei mosaic (2048² for models under 100 kFLOP/pixel, 1024² under 500 k, else 512²), "
        "default plan, best of 2; GFLOP/s counts the pixels the tiles execute (halos included) at the FLOPs of a "
        "direct convolution, so oneDNN's faster algorithms for 3x3 convolutions (Winograd) can pass 100 % of the "
        "matmul rate. Training: steps/s of "
        f"`train_teacher` (supervised L1) and of `distill` (method `skd`, teacher `{BENCH_TEACHER}`), batch 8 of 64², "
        "timed between the first and the last step. Random weights (speed does not depend on them). Dense float32 "
        f"matmul peak here: {peak:.1f} GFLOP/s.",
        "",
        *format_table(rows, peak),
        "",
        f"**Recommended pair on a CPU: `{CPU_TEACHER}` -> `{s['preset']}`** (what `make demo` uses). Targets:",
        "",
        f"- restore {pair['restore_speedup']:.1f}x faster than its teacher (target >= 4x): "
        f"{ok(pair['restore_speedup'] >= 4)};",
        f"- {pair['restore_mpx_s']:.2f} Mpx/s end to end (target >= 1.0, 2x CAREamics' {CAREAMICS['predict_mpx_s']} "
        f"Mpx/s): {ok(pair['restore_mpx_s'] >= 1.0)}; CAREamics' figure was measured on this machine type by the "
        "reviewer of issue 10, not in this run (CAREamics needs torchvision, which does not install beside torch "
        "2.13 here);",
        f"- {pair['share_of_peak']:.0%} of the matmul peak in `restore` (target >= 25 %): "
        f"{ok(pair['share_of_peak'] >= 0.25)};",
        f"- a distillation (`skd`) step costs {pair['distill_over_alone']:.1f}x a step of the student trained alone "
        f"(target <= 2x): {ok(pair['distill_over_alone'] <= 2)}. The teacher's forward pass alone costs more than "
        "a whole U-Net step, and the skd terms (spatial MCA maps of up to 1024 x 1024 positions, the contrastive "
        "term's passes through the teacher encoder) cost more than that. On a CPU, `--method output-kd` avoids it: "
        "the teacher labels the images once and each step is a student step (docs/method.md);",
        f"- U-Nets trained alone for the demo's budget ({b['steps']} steps, lr {b['lr']}), held-out PSNR on "
        f"nuclei2d (Poisson-Gaussian, peak 20, sigma 0.05): input {unets['input']:.2f} dB, TV {unets['tv']:.2f}, "
        f"`unet-xs` {unets['unet-xs']:.2f}, `{CPU_STUDENT}` {unets[CPU_STUDENT]:.2f}: "
        f"{ok(unets[CPU_STUDENT] > unets['tv'])} for `{CPU_STUDENT}` (target: beats TV).",
        "",
        "Recommended on a GPU: `unet-m` (4x the FLOPs of `unet-s`, 7 % of the published teacher's) — dense "
        "convolutions are what GPUs run best; not measured here (no GPU was lent to this run).",
    ]
    return "\n".join(md), r


# Peak RSS from VmHWM (this process's own memory map): ru_maxrss would also count the parent's memory, which a
# vfork + exec child inherits as its starting high-water mark.
MEASURE = """
import json, re, sys, time
from pathlib import Path
from napari_skd import restore
t0 = time.perf_counter()
restore(sys.argv[1], sys.argv[2], sys.argv[3], axes="ZYX", dtype="input", device="cpu", intensities="as-is")
hwm = int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss_mb": hwm / 1024}))
"""


def make_volume(path: Path, shape: tuple[int, int, int]) -> int:
    """A uint16 zarr volume of nuclei mosaics with noise, chunked (1, 1024, 1024); returns its size in bytes."""
    arr = zarr.create_array(str(path), shape=shape, chunks=(1, 1024, 1024), dtype="uint16")
    plane = nuclei_image(shape[1:]).astype(np.uint16) * 200
    rng = np.random.default_rng(0)
    for z in range(shape[0]):
        noise = rng.integers(0, 2000, size=shape[1:], dtype=np.uint16)
        arr[z] = np.roll(plane, 37 * z, axis=1) + noise
    return int(np.prod(shape)) * 2


def measure(src: Path, ckpt: Path, out: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", MEASURE, str(src), str(ckpt), str(out)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def memory(paths: dict[str, Path], work: Path, quick: bool) -> tuple[str, dict]:
    big_shape = (4, 2048, 2048) if quick else (60, 4096, 4096)
    small_shape = (1, 2048, 2048)
    nbytes = make_volume(work / "big.zarr", big_shape)
    make_volume(work / "small.zarr", small_shape)
    try:
        small = measure(work / "small.zarr", paths["stream"], work / "small_out.zarr")
        big = measure(work / "big.zarr", paths["stream"], work / "big_out.zarr")
    finally:
        for name in ("big.zarr", "big_out.zarr"):
            shutil.rmtree(work / name, ignore_errors=True)
    model_mb = sum(p.numel() * 4 for p in build_model(STREAM_MODEL).parameters()) / 2**20
    r = {"big_gb": nbytes / 1e9, "big": big, "small": small, "delta_mb": big["peak_rss_mb"] - small["peak_rss_mb"]}
    vox = int(np.prod(big_shape))
    md = [
        f"**Streaming memory** (subprocess peak RSS; a U-Net with dim 4 and one conv per level, {model_mb:.2f} MB of "
        "weights, slice-wise, default 2D plan, uint16 output; input chunks 1 x 1024 x 1024):",
        "",
        "| input | size | time | peak RSS |",
        "|---|---|---|---|",
        f"| {' x '.join(map(str, small_shape))} uint16 zarr | {np.prod(small_shape) * 2 / 1e6:.0f} MB | "
        f"{small['seconds']:.0f} s | {small['peak_rss_mb']:.0f} MB |",
        f"| {' x '.join(map(str, big_shape))} uint16 zarr | {nbytes / 1e9:.2f} GB | {big['seconds']:.0f} s "
        f"({vox / big['seconds'] / 1e6:.2f} Mvox/s) | {big['peak_rss_mb']:.0f} MB |",
        "",
        f"Peak RSS grows by **{r['delta_mb']:.0f} MB** from one slice to {nbytes / 1e9:.2f} GB "
        "(target: flat, <= model + 512 MB).",
    ]
    return "\n".join(md), r


def dask_scaling(paths: dict[str, Path], work: Path, quick: bool) -> tuple[str, dict]:
    shape = (6, 512, 512) if quick else (16, 1024, 1024)
    src = work / "stack.zarr"
    make_volume(src, shape)
    rates = {1: 0.0, 2: 0.0}
    for attempt in range(1 if quick else 2):  # alternated, best of each: the machine's load may change meanwhile
        for n in (1, 2):
            stamps: list[float] = []

            def note(event, stamps=stamps):
                if event.phase == "restore" and event.message.startswith("block"):
                    stamps.append(time.perf_counter())

            out = work / f"dask{n}-{attempt}.zarr"
            restore(src, paths["unet-xs"], out, axes="ZYX", distributed=n, progress=note, device="cpu")
            rates[n] = max(rates[n], (len(stamps) - 1) / (stamps[-1] - stamps[0]))
    ceiling = parallel_ceiling(quick)
    r = {"blocks": shape[0], "rate1": rates[1], "rate2": rates[2], "speedup": rates[2] / rates[1], "ceiling": ceiling}
    md = (
        f"**dask-distributed** (`unet-xs`, {' x '.join(map(str, shape))} zarr stack, one block per slice, local "
        "single-threaded worker processes, timed from the first finished block to the last, best of alternated "
        f"runs): 1 worker {rates[1]:.2f} blocks/s, 2 workers {rates[2]:.2f} blocks/s: **{r['speedup']:.2f}x** "
        f"(target >= 1.7x). Calibration in the same run: two independent single-threaded processes doing plain "
        f"convolutions get **{ceiling:.2f}x** the throughput of one, the most any 2-worker scheme can reach on this "
        "machine at this load."
    )
    return md, r


CONV_LOOP = """
import time, torch
torch.set_num_threads(1)
conv, x = torch.nn.Conv2d(8, 8, 3, padding=1), torch.rand(1, 8, 512, 512)
with torch.inference_mode():
    conv(x)
    t0 = time.perf_counter()
    for _ in range({n}):
        conv(x)
    print(time.perf_counter() - t0)
"""


def parallel_ceiling(quick: bool) -> float:
    """Throughput of 2 concurrent single-threaded processes over 1 (same work each): what 2 cores give now."""
    code = CONV_LOOP.format(n=10 if quick else 60)

    def run(k: int) -> float:
        procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(k)]
        return max(float(p.communicate()[0]) for p in procs)

    return 2 * run(1) / run(2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, to check the script")
    ap.add_argument("--device", default="cpu", help="device of the throughput part (cpu, cuda, auto)")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    args = ap.parse_args()
    device, sentence = resolve_device(args.device)
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="skd-restore-bench-", dir="/tmp"))
    results: dict = {}
    sections: dict[str, str] = {}
    try:
        paths = checkpoints(work)
        if "presets" in args.parts:
            sections["presets"], results["presets"] = presets(device, args.quick)
        if "throughput" in args.parts:
            sections["throughput"], results["throughput"] = throughput(paths, device, args.quick)
        if "small" in args.parts:
            sections["small"], results["small"] = small_inputs(paths, device, args.quick)
        if "memory" in args.parts:
            sections["memory"], results["memory"] = memory(paths, work, args.quick)
        if "dask" in args.parts:
            sections["dask"], results["dask"] = dask_scaling(paths, work, args.quick)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    minutes = (time.perf_counter() - t0) / 60
    load = f"load average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    name = "restore_speed" if device.type == "cpu" else f"restore_speed_{device.type}"
    suffix = "" if device.type == "cpu" else f" ({device.type})"
    print(json.dumps(results, indent=1, default=float))
    if args.quick:  # a smoke run never replaces measured figures
        print("\n\n".join(sections.values()))
        return
    write_section(
        name,
        f"## Restoration speed and memory{suffix} (`benchmarks/restore_speed.py`)\n\n"
        + "\n\n".join(__doc__.split("\n\n")[1:3]),
    )
    when = (
        f"Measured on {machine()}; {sentence}; parts {', '.join(sections)} took {minutes:.0f} min; {load} (other "
        "processes shared the CPU: absolute figures drop, same-run ratios much less)."
    )
    for part, md in sections.items():  # each part its own block: rerunning one part keeps the others
        write_section(f"{name}:{part}", f"{md}\n\n_{when}_")
        print(md)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.json"
    previous = json.loads(out.read_text()) if out.exists() else {}
    for part in results.values():  # each part says where it ran: a rerun of one part may be on another machine
        part["machine"], part["load"] = machine(), load
    out.write_text(json.dumps(previous | results | {"machine": machine()}, indent=1, default=float))


if __name__ == "__main__":
    main()
