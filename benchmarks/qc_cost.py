"""What fidelity QC costs: a student restore with and without ``qc_teacher``, against restoring with the teacher.

On a 2048 x 2048 nuclei mosaic with 256 x 256 output blocks (64 blocks), the recommended CPU pair (``teacher-tiny``
teacher, ``unet-s`` student; the weights do not change the time), in one run:

- the student's restore alone, and with QC at ``--fractions`` (default 0.05 and 0.2): the added time as a share of
  the student's restore;
- the teacher restoring the whole image: what checking every block would cost.

    python benchmarks/qc_cost.py             # about 3 min on 2 CPU cores; writes docs/benchmarks.md and results/
    python benchmarks/qc_cost.py --quick     # smoke run: a 512 x 512 image, prints, writes nothing
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from _report import machine, write_section
from napari_skd import restore
from napari_skd.checkpoint import save_checkpoint
from napari_skd.models import build_model
from napari_skd.normalize import Normalization
from napari_skd.restoration.target import read_qc
from napari_skd.samples import load_sample
from napari_skd.speed import mosaic

RESULTS = Path(__file__).resolve().parent / "results"
TEACHER, STUDENT = "teacher-tiny", "unet-s"


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.2])
    args = parser.parse_args()
    size, chunk = (512, 128) if args.quick else (2048, 256)
    base, _ = load_sample("nuclei2d")
    image = mosaic(base, (size, size))
    norm = Normalization(low=float(base.min()), high=float(base.max()))
    work = Path(tempfile.mkdtemp(prefix="skd-qc-"))
    t_start = time.perf_counter()
    try:
        torch.manual_seed(0)
        teacher = save_checkpoint(work / "teacher.pt", build_model(TEACHER), role="teacher", norm=norm)
        student = save_checkpoint(work / "student.pt", build_model(STUDENT), role="student", norm=norm)
        grid = dict(tile=256, chunks=chunk, intensities="as-is")
        restore(image[:chunk, :chunk], student, **grid)  # warm-up of both models (allocator, thread pools)
        restore(image[:chunk, :chunk], teacher, **grid)
        rows = {"student": timed(lambda: restore(image, student, work / "s.zarr", **grid))}
        rows["teacher"] = timed(lambda: restore(image, teacher, work / "t.zarr", **grid))
        checked = {}
        for f in args.fractions:
            out = work / f"qc{f}.zarr"
            rows[f"student + QC {f:g}"] = timed(
                lambda out=out, f=f: restore(image, student, out, qc_teacher=teacher, qc_fraction=f, **grid)
            )
            checked[f] = len(read_qc(out).blocks)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    blocks = (size // chunk) ** 2
    result = {
        "image": [size, size],
        "blocks": blocks,
        "teacher": TEACHER,
        "student": STUDENT,
        "seconds": {k: round(v, 2) for k, v in rows.items()},
        "checked": {str(k): v for k, v in checked.items()},
    }
    lines = [
        f"**Fidelity QC cost** ({STUDENT} student, {TEACHER} teacher, {size} x {size} nuclei mosaic, {blocks} output "
        f"blocks of {chunk} x {chunk}, tiles 256):",
        "",
        "| run | blocks the teacher restores | time | vs the student's restore |",
        "|---|---|---|---|",
        f"| student restore | 0 | {rows['student']:.1f} s | 1.00x |",
    ]
    for f in args.fractions:
        t = rows[f"student + QC {f:g}"]
        lines.append(f"| student restore + QC at {f:g} | {checked[f]} | {t:.1f} s | {t / rows['student']:.2f}x |")
    lines.append(f"| teacher restore (every block) | {blocks} | {rows['teacher']:.1f} s | "
                 f"{rows['teacher'] / rows['student']:.2f}x |")  # fmt: skip
    lines += [
        "",
        "QC adds the teacher on the sampled blocks plus one pass that reads every block's input and output to find "
        "the hardest ones.",
        "",
        f"_Measured on {machine()}; took {(time.perf_counter() - t_start) / 60:.0f} min._",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "qc_cost.json").write_text(json.dumps(result, indent=2) + "\n")
        write_section("qc_cost", "## Fidelity QC cost (`benchmarks/qc_cost.py`)\n\n" + text)


if __name__ == "__main__":
    main()
