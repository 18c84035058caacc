"""napari on an OME-Zarr larger than memory should allow: open, zoom out to the whole image, pan, screenshot.

A synthetic 2D uint16 OME-Zarr (default 4.3 GB: 46,400 x 46,400 px, 1024 x 1024 chunks) is written chunk by chunk
with its pyramid levels updated after each chunk (``pyramid_levels="auto"``, as ``restore`` writes its outputs:
:func:`napari_skd.io.pyramid.update_pyramid`). A child process under Xvfb then opens it in napari through the
napari-skd reader (one multiscale layer), zooms out to the whole image, takes a screenshot, pans across it at full
resolution and takes another; it reports the level napari drew at each step and its own peak RSS (``VmHWM``).
Target: peak RSS < 1.5 GB.

    python benchmarks/napari_multiscale.py                    # 4.3 GB, about 3 min to write on 2 cores
    python benchmarks/napari_multiscale.py --size-gb 0.05 --quick   # smoke run: prints, writes no docs
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

from napari_skd.io.pyramid import auto_levels, update_pyramid
from napari_skd.io.writers import create_ome_zarr, pyramid_arrays

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
SHOT = ROOT / "docs" / "images" / "multiscale.png"
CHUNK = 1024

CHILD = r"""
import json, sys, time
from pathlib import Path
import napari
from qtpy.QtWidgets import QApplication

path, shots = sys.argv[1], Path(sys.argv[2])

def hwm_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

def settle(layer, seconds=1.0):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or not layer.loaded:
        QApplication.processEvents()
        time.sleep(0.02)
        if time.perf_counter() > end + 60:
            break

out = {"rss_start_mb": hwm_mb()}
viewer = napari.Viewer(show=True)
viewer.window.resize(1200, 900)
t = time.perf_counter()
(layer,) = viewer.open(path, plugin="napari-skd")
out["multiscale"] = bool(layer.multiscale)
out["levels"] = [list(map(int, d.shape)) for d in layer.data] if layer.multiscale else [list(layer.data.shape)]
viewer.reset_view()  # the whole image
settle(layer)
out["open_s"] = time.perf_counter() - t
out["whole_level"] = int(layer.data_level)
viewer.screenshot(str(shots / "whole.png"), canvas_only=True, flash=False)
camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
h, w = layer.data[0].shape if layer.multiscale else layer.data.shape
camera.zoom = 1.0  # about one screen pixel per voxel: full resolution
t = time.perf_counter()
for i, f in enumerate((0.2, 0.4, 0.6, 0.8)):  # pan along the diagonal
    camera.center = (f * h, f * w)
    settle(layer, 0.5)
out["pan_s"] = time.perf_counter() - t
out["pan_level"] = int(layer.data_level)
viewer.screenshot(str(shots / "panned.png"), canvas_only=True, flash=False)
out["peak_rss_mb"] = hwm_mb()
print("RESULT " + json.dumps(out))
viewer.close()
"""


def pattern(y: slice, x: slice, side: int, seed: int) -> np.ndarray:
    """Content visible at every zoom: rings across the whole image, a fine grid, and noise (realistic compression)."""
    yy, xx = np.mgrid[y, x].astype(np.float32)
    r = np.hypot(yy - side / 2, xx - side / 2)
    rings = 0.5 + 0.5 * np.cos(2 * np.pi * r / (side / 12))
    grid = ((yy.astype(np.int64) // 64 + xx.astype(np.int64) // 64) % 2).astype(np.float32)
    noise = np.random.default_rng(seed).normal(0, 1, rings.shape).astype(np.float32)
    return np.clip(8000 + 30000 * rings + 4000 * grid + 800 * noise, 0, 65535).astype(np.uint16)


def write_volume(path: Path, side: int) -> dict:
    """The synthetic OME-Zarr, chunk by chunk, each followed by its pyramid levels."""
    levels = auto_levels((side, side), "YX")
    t = time.perf_counter()
    create_ome_zarr(path, shape=(side, side), dtype="uint16", chunks=(CHUNK, CHUNK), axes="YX", levels=levels)
    arrays = pyramid_arrays(zarr.open_group(str(path), mode="r+"))
    n = math.ceil(side / CHUNK)
    for i in range(n):
        for j in range(n):
            index = (slice(i * CHUNK, min((i + 1) * CHUNK, side)), slice(j * CHUNK, min((j + 1) * CHUNK, side)))
            arrays[0][index] = pattern(*index, side, i * n + j)
            update_pyramid(arrays, "YX", index)
        print(f"  wrote row {i + 1}/{n} of chunks", flush=True)
    disk = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return {"side": side, "levels": levels, "bytes": side * side * 2, "disk_bytes": disk,
            "write_s": time.perf_counter() - t}  # fmt: skip


def view(path: Path, shots: Path) -> dict:
    """The napari child under Xvfb; its RESULT line."""
    cmd = ["xvfb-run", "-a", "-s", "-screen 0 1600x1200x24", sys.executable, "-c", CHILD, str(path), str(shots)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("RESULT ")]
    if run.returncode != 0 or not lines:
        raise SystemExit(f"the napari child failed ({run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def report(volume: dict, seen: dict) -> str:
    gb = volume["bytes"] / 1e9
    verdict = "met" if seen["peak_rss_mb"] < 1536 else "missed"
    return "\n".join(
        [
            "## napari on a larger-than-memory OME-Zarr (`benchmarks/napari_multiscale.py`)",
            "",
            f"A synthetic {volume['side']:,} x {volume['side']:,} uint16 OME-Zarr ({gb:.2f} GB of pixels, "
            f"{volume['disk_bytes'] / 1e9:.2f} GB on disk with zstd; 1024 x 1024 chunks) written chunk by chunk in "
            f'{volume["write_s"]:.0f} s, its {volume["levels"]} pyramid levels (`pyramid_levels="auto"`) updated '
            "after each chunk as `restore` does. A napari child process under Xvfb opened it through the napari-skd "
            "reader, zoomed out to the whole image, took a screenshot, panned across it at full resolution "
            "(4 positions) and took another.",
            "",
            "| step | level napari drew | time |",
            "|---|---|---|",
            f"| open + zoom out to the whole image | {seen['whole_level']} (of 0-{len(seen['levels']) - 1}) "
            f"({seen['levels'][seen['whole_level']][0]:,} px side) | {seen['open_s']:.1f} s |",
            f"| pan at full resolution | {seen['pan_level']} | {seen['pan_s']:.1f} s |",
            "",
            f"One multiscale layer: **{seen['multiscale']}**. Peak RSS of the napari process: "
            f"**{seen['peak_rss_mb']:.0f} MB** ({seen['rss_start_mb']:.0f} MB after starting Python), target < 1.5 GB: "
            f"{verdict}. The image never has to fit in memory: napari reads the level and the chunks on screen.",
            "",
            f"![the whole {gb:.1f} GB image zoomed out in napari](images/multiscale.png)",
        ]
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-gb", type=float, default=4.3, help="pixel data to write (uint16, square)")
    p.add_argument("--work", type=Path, help="folder for the volume (default: a temporary folder, removed)")
    p.add_argument("--quick", action="store_true", help="print the results; write no docs or screenshot")
    a = p.parse_args()
    side = int(math.sqrt(a.size_gb * 1e9 / 2))
    work = a.work or Path(tempfile.mkdtemp(prefix="skd-ms-"))
    path = work / "synthetic.ome.zarr"
    try:
        if path.exists():
            shutil.rmtree(path)
        volume = write_volume(path, side)
        seen = view(path, work)
        result = {"volume": volume, "napari": seen}
        print(json.dumps(result, indent=1))
        if not a.quick:
            from _report import machine, write_section

            RESULTS.mkdir(exist_ok=True)
            result["machine"] = machine()
            (RESULTS / "napari_multiscale.json").write_text(json.dumps(result, indent=1) + "\n")
            shutil.copy(work / "whole.png", SHOT)
            body = report(volume, seen) + f"\n\n_Measured on {machine()}._"
            print(f"wrote {write_section('napari_multiscale', body)} and {SHOT}")
    finally:
        if a.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
