"""Soak: restore a large synthetic zarr volume with ``napari-skd restore`` and watch the process's memory and files.

A uint16 volume of ``--size-gb`` GiB (4096 x 4096 slices, 1024 x 1024 chunks) is written chunk by chunk under
``--workdir`` (never held in memory), then restored slice-wise by ``unet-xs`` in a child process running the command
line with the default plan (2048 x 2048 blocks, output in the input's dtype). Every ``--interval`` seconds the child's
RSS, peak RSS (VmHWM), open file descriptors and threads are sampled with psutil, with the number of blocks recorded
in the output. The curve goes to ``docs/images/soak.png`` and a table to the ``soak`` section of
``docs/benchmarks.md``. The working folder is deleted afterwards (``--keep`` keeps it).

    python benchmarks/soak.py                      # 4 GiB: about 25 min on 2 busy CPU cores
    python benchmarks/soak.py --size-gb 1          # a shorter run (the section says which size ran)
    python benchmarks/soak.py --quick              # 32 MiB smoke check: prints the table, writes no docs
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch
import zarr

from _report import machine, write_section
from napari_skd.checkpoint import save_checkpoint
from napari_skd.models import build_model
from napari_skd.normalize import Normalization
from napari_skd.restoration.target import read_record
from napari_skd.restoration.target.record import decode_done

ROOT = Path(__file__).resolve().parents[1]
PLOT = ROOT / "docs" / "images" / "soak.png"
MiB = 2**20


def make_volume(path: Path, size_gb: float, side: int) -> tuple[int, int, int]:
    """A (Z, side, side) uint16 zarr of about ``size_gb`` GiB: smooth structures plus noise, one slice at a time."""
    depth = max(1, math.ceil(size_gb * 2**30 / (side * side * 2)))
    array = zarr.create_array(str(path), shape=(depth, side, side), chunks=(1, 1024, 1024), dtype="uint16")
    y, x = np.ogrid[:side, :side]
    for z in range(depth):
        rng = np.random.default_rng(z)
        plane = 1500 + 1000 * np.sin(y / 37 + z / 5) * np.cos(x / 53) + rng.normal(0, 150, (side, side))
        array[z] = np.clip(plane, 0, 65535).astype(np.uint16)
    return array.shape


def blocks_done(output: Path) -> int:
    record = read_record(output) if output.exists() else None
    return sum(decode_done(record["done"], record["blocks"])) if record else 0


def sample(proc: psutil.Process) -> dict[str, float]:
    with proc.oneshot():
        rss = proc.memory_info().rss
        fds, threads = proc.num_fds(), proc.num_threads()
        files = len(proc.open_files())
    hwm = rss
    try:
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {"rss": rss / MiB, "peak": hwm / MiB, "fds": fds, "files": files, "threads": threads}


def soak(work: Path, size_gb: float, side: int, interval: float) -> dict:
    source, output = work / "input.zarr", work / "restored.ome.zarr"
    t0 = time.perf_counter()
    shape = make_volume(source, size_gb, side)
    created = time.perf_counter() - t0
    torch.manual_seed(0)
    ck = save_checkpoint(work / "unet-xs.pt", build_model("unet-xs"), norm=Normalization(low=0.0, high=4000.0))
    command = [sys.executable, "-m", "napari_skd.cli", "--quiet", "restore", str(source), "--checkpoint", str(ck),
               "--output", str(output), "--axes", "ZYX", "--dtype", "input", "--device", "cpu"]  # fmt: skip
    log = open(work / "restore.log", "w")  # noqa: SIM115 (closed below, after the child)
    child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    proc, samples, start = psutil.Process(child.pid), [], time.perf_counter()
    while child.poll() is None:
        try:
            s = sample(proc)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            break
        s.update(t=time.perf_counter() - start, blocks=blocks_done(output))
        samples.append(s)
        print(f"{s['t']:7.0f} s  blocks {s['blocks']:5d}  rss {s['rss']:7.0f} MiB  peak {s['peak']:7.0f} MiB  "
              f"fds {s['fds']:3d}  threads {s['threads']:3d}", flush=True)  # fmt: skip
        time.sleep(interval)
    seconds = time.perf_counter() - start
    log.close()
    if child.returncode != 0:
        raise SystemExit(f"restore failed (exit {child.returncode}):\n{(work / 'restore.log').read_text()[-3000:]}")
    record = read_record(output)
    return {
        "shape": shape,
        "gib": int(np.prod(shape)) * 2 / 2**30,
        "created_s": created,
        "seconds": seconds,
        "blocks": record["blocks"],
        "complete": record["complete"],
        "samples": samples,
        "output_gib": sum(p.stat().st_size for p in output.rglob("*") if p.is_file()) / 2**30,
        "input_gib": sum(p.stat().st_size for p in source.rglob("*") if p.is_file()) / 2**30,
    }


def growth(samples: list[dict], key: str) -> tuple[float, float, float]:
    """Drift of ``key`` while blocks are being restored (start-up and shut-down left out): (median over the blocks
    20-40 %, median over the last 20 %, least-squares slope per 100 blocks over everything after 20 %)."""
    total = max(s["blocks"] for s in samples)
    working = [s for s in samples if 0.2 * total <= s["blocks"] < total] or samples
    early = [s[key] for s in working if s["blocks"] < 0.4 * total] or [working[0][key]]
    late = [s[key] for s in working if s["blocks"] >= 0.8 * total] or [working[-1][key]]
    x = np.array([s["blocks"] for s in working], float)
    y = np.array([s[key] for s in working], float)
    slope = float(np.polyfit(x, y, 1)[0]) * 100 if len(set(x)) > 1 else 0.0
    return float(np.median(early)), float(np.median(late)), slope


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["samples"]
    t = [x["t"] / 60 for x in s]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    top.plot(t, [x["rss"] for x in s], label="RSS")
    top.plot(t, [x["peak"] for x in s], "--", label="peak RSS (VmHWM)")
    top.set_ylabel("MiB")
    top.set_ylim(bottom=0)
    top.legend(loc="lower right")
    top.set_title(f"napari-skd restore, {result['gib']:.2f} GiB uint16 zarr, unet-xs on the CPU")
    bottom.plot(t, [x["fds"] for x in s], label="open file descriptors")
    bottom.plot(t, [x["threads"] for x in s], label="threads")
    bottom.set_ylabel("count")
    bottom.set_ylim(bottom=0)
    blocks = bottom.twinx()
    blocks.plot(t, [x["blocks"] for x in s], color="grey", alpha=0.5, label="blocks recorded")
    blocks.set_ylabel("blocks recorded")
    bottom.legend(loc="center right")
    bottom.set_xlabel("minutes")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(result: dict, requested_gb: float, interval: float) -> str:
    s = result["samples"]
    rss20, rss_end, rss_slope = growth(s, "rss")
    fds = [x["fds"] for x in s]
    threads = [x["threads"] for x in s]
    peak = max(x["peak"] for x in s)
    z, y, x = result["shape"]
    voxels = z * y * x
    short = (
        f" This run is smaller than the 4 GiB the soak is meant for (`--size-gb {requested_gb:g}`), to fit the time "
        "available on a shared machine."
        if requested_gb < 4
        else ""
    )
    lines = [
        "## Soak: memory and files over a long restoration",
        "",
        f"`python benchmarks/soak.py --size-gb {requested_gb:g}`: a {result['gib']:.2f} GiB uint16 zarr volume "
        f"({z} x {y} x {x}, 1024 x 1024 chunks), written chunk by chunk, restored by `napari-skd "
        f"restore --axes ZYX --dtype input` with a random `unet-xs` (2D, slice-wise) and the default plan: "
        f"{result['blocks']} blocks of {min(y, 2048)} x {min(x, 2048)}. The child process was sampled every "
        f"{interval:g} s with psutil (RSS, peak RSS from VmHWM, open file descriptors, threads) together with the "
        "blocks recorded in the output." + short,
        "",
        f"Machine: {machine()}.",
        "",
        f"- time: {result['seconds'] / 60:.1f} min ({voxels / result['seconds'] / 1e6:.2f} Mvoxel/s; writing the "
        f"input took {result['created_s']:.0f} s); input {result['input_gib']:.2f} GiB and output "
        f"{result['output_gib']:.2f} GiB on disk (zstd); output complete: {result['complete']}",
        f"- peak RSS: {peak:.0f} MiB for a {result['gib']:.2f} GiB volume; the high-water mark (VmHWM) was "
        f"{_at(s, 0.02, 'peak'):.0f} MiB at 2 % of the blocks and {_at(s, 0.2, 'peak'):.0f} MiB at 20 %",
        f"- RSS while restoring (median): {rss20:.0f} MiB over blocks 20-40 %, {rss_end:.0f} MiB over the last "
        f"20 %; least-squares slope after 20 %: {rss_slope:+.1f} MiB per 100 blocks",
        f"- open file descriptors: {min(fds)} to {max(fds)} (last {fds[-1]}); threads: {min(threads)} to "
        f"{max(threads)}",
        "",
        _verdict(rss20, rss_end, rss_slope, result["blocks"], fds),
        "",
        "| minutes | blocks recorded | RSS MiB | peak RSS MiB | open fds | threads |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    step = max(1, len(s) // 20)
    for row in [*s[::step], s[-1]] if (len(s) - 1) % step else s[::step]:
        lines.append(
            f"| {row['t'] / 60:.1f} | {row['blocks']} | {row['rss']:.0f} | {row['peak']:.0f} | {row['fds']} | "
            f"{row['threads']} |"
        )
    lines += ["", "![RSS and open files over the soak](images/soak.png)"]
    return "\n".join(lines)


def _at(samples: list[dict], fraction: float, key: str) -> float:
    """``key`` of the first sample with at least ``fraction`` of the blocks recorded."""
    total = max(s["blocks"] for s in samples)
    return next(s[key] for s in samples if s["blocks"] >= fraction * total)


def _verdict(early: float, late: float, slope: float, blocks: int, fds: list[int]) -> str:
    drift = slope * blocks / 100
    if late - early < 100 and drift < 100:
        memory = (
            f"Memory does not grow: the median RSS of the last fifth of the blocks is {late - early:+.0f} MiB from "
            f"that of blocks 20-40 %, and the fitted trend amounts to {drift:+.0f} MiB over the whole run (RSS "
            "swings within each block as tiles are allocated and freed)."
        )
    else:
        memory = (
            f"Memory grows: the median RSS of the last fifth of the blocks is {late - early:+.0f} MiB above that of "
            f"blocks 20-40 % (fitted trend {drift:+.0f} MiB over the run); worth investigating before longer runs."
        )
    settled = fds[len(fds) // 5 :] or fds
    files = (
        f"Open file descriptors stay bounded ({min(settled)} to {max(settled)} after the start-up)."
        if max(settled) - min(settled) <= 8
        else f"Open file descriptors grow during the run ({min(settled)} to {max(settled)})."
    )
    return f"{memory} {files}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-gb", type=float, default=4.0, help="volume size in GiB (uint16)")
    p.add_argument("--quick", action="store_true", help="32 MiB smoke check with 1024 x 1024 slices; no docs")
    p.add_argument("--interval", type=float, default=3.0, help="seconds between samples")
    p.add_argument("--workdir", default=tempfile.gettempdir(), help="where the volumes go (local disk)")
    p.add_argument("--keep", action="store_true", help="keep the volumes afterwards")
    p.add_argument("--no-report", action="store_true", help="print only; do not touch docs/")
    args = p.parse_args()
    size, side = (1 / 32, 1024) if args.quick else (args.size_gb, 4096)
    interval = min(args.interval, 0.5) if args.quick else args.interval
    free = shutil.disk_usage(args.workdir).free / 2**30
    if free < 2.5 * size + 1:
        raise SystemExit(f"{args.workdir} has {free:.1f} GiB free; the soak needs about {2.5 * size + 1:.1f} GiB")
    work = Path(tempfile.mkdtemp(prefix="napari-skd-soak-", dir=args.workdir))
    try:
        result = soak(work, size, side, interval)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    body = report(result, size, interval)
    print(body)
    if not (args.quick or args.no_report):
        plot(result, PLOT)
        print(f"wrote {write_section('soak', body)} and {PLOT}")


if __name__ == "__main__":
    main()
