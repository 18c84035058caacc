"""Does distillation pay? SKD students against the same student trained alone, output-KD, feature-KD and Noise2Void.

Protocol (issue 11): real images (2D fluorescence nuclei, 2D phase-contrast cell, a slab of a 3D brain MR volume,
restored slice by slice), two Gaussian noise levels, several seeds, paired differences with 95 % confidence intervals.

- Images are scaled to [0, 1] by their 1 and 99.8 percentiles; one fixed noise realisation per image and level is
  the training data, as in a real acquisition. Training sees the top 75 % of rows; every PSNR is measured on the
  held-out bottom rows of that same noisy image against the clean image (data range 1).
- ``paired`` regime: the clean image exists. Teacher: ``teacher-tiny``, trained supervised on both noise levels of an
  image (one teacher per image). Students (``unet-xs``, 11 % of the teacher's FLOPs) at equal steps: scratch,
  output-kd, feature-kd, skd (and ablations); at equal wall time: scratch gets the seconds skd used.
- ``noisy-only`` regime: no clean image. Teacher: ``teacher-tiny`` trained with Noise2Void on both noisy images. The
  skd student learns from the noisy image and the teacher; so does ``output-kd``, whose labels the teacher computes
  once ahead (that time counts against its budget). The baseline is the same student trained with Noise2Void alone,
  at equal steps and at equal wall time.

    python benchmarks/distill_quality.py --work W --shard 0/2 &   # two 1-thread workers share the 2 cores
    python benchmarks/distill_quality.py --work W --shard 1/2 &
    python benchmarks/distill_quality.py --work W --report        # tables, JSON and plot from W/results.jsonl
    python benchmarks/distill_quality.py --quick --work W2        # a smoke run of a few steps (numbers meaningless)

Finished runs are kept in ``W/results.jsonl``: a rerun continues where it stopped.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from _images import unit_sample
from _report import machine, write_section
from napari_skd import distill, train_teacher
from napari_skd.checkpoint import load_checkpoint
from napari_skd.models import count_flops

ROOT = Path(__file__).resolve().parents[1]
RESULTS_JSON = ROOT / "benchmarks" / "results" / "distill_quality.json"
IMAGES = ("nuclei2d", "cell", "mri_t1")
NOISE = {"low": 0.08, "high": 0.16}  # Gaussian sigma in units of the image's 1-99.8 percentile range
SEEDS = (0, 1, 2)
TEACHER, STUDENT = "teacher-tiny", "unet-xs"
PAIRED = ("scratch", "output-kd", "feature-kd", "skd", "skd-rec")
NOISY_ONLY = ("skd", "n2v-scratch", "output-kd")  # output-kd: labels computed ahead, a student-only step
#: Variants for pilots (``--methods``): a method with loss settings changed.
VARIANTS: dict[str, tuple[str, dict]] = {
    "skd-3lv": ("skd", {"levels": ["enc1", "latent", "dec1"]}),
    "skd-no-cl-3lv": ("skd-no-cl", {"levels": ["enc1", "latent", "dec1"]}),
    "skd-beta0": ("skd", {"beta": 0.0}),
    "skd-rec-beta2": ("skd-rec", {"beta": 2.0}),
    "skd-nobal": ("skd", {"balance": False}),
    "skd-cl": ("skd", {"alpha3": 0.1}),
    "skd-rec-live": ("skd-rec", {"teacher_labels": "live"}),
    "skd-ema": ("skd", {}),  # with train.ema (TRAIN_VARIANTS)
}
#: Training settings of variants.
TRAIN_VARIANTS: dict[str, dict] = {
    "skd-ema": {"ema": 0.98},
}
VAL_FRACTION = 0.25


# --- data ---------------------------------------------------------------------------------------------------------
def clean_image(name: str) -> np.ndarray:
    """The clean image in [0, 1] (1-99.8 percentiles): YX, or ZYX for the MR slab (10 axial slices, 4 mm apart)."""
    return unit_sample(name, slice(70, 110, 4))


def noisy_image(name: str, level: str) -> np.ndarray:
    clean = clean_image(name)
    rng = np.random.default_rng([IMAGES.index(name), list(NOISE).index(level), 2026])
    return (clean + NOISE[level] * rng.standard_normal(clean.shape)).astype(np.float32)


def heldout(a: np.ndarray) -> np.ndarray:
    """The bottom rows that training never sees, cropped to multiples of 8."""
    rows = math.ceil(a.shape[-2] * VAL_FRACTION) // 8 * 8
    return a[..., a.shape[-2] - rows :, : a.shape[-1] // 8 * 8]


def psnr(path: Path, name: str, level: str) -> float:
    """PSNR (dB, data range 1) of a checkpoint on the held-out rows, slice by slice for a volume."""
    ck = load_checkpoint(path)
    noisy, clean = heldout(noisy_image(name, level)), heldout(clean_image(name))
    planes = noisy.reshape(-1, *noisy.shape[-2:])
    with torch.inference_mode():
        x = torch.from_numpy(ck.norm.apply(planes)[:, None].astype(np.float32))
        out = ck.norm.invert(ck.model.eval()(x).numpy()[:, 0]).reshape(clean.shape)
    mse = float(np.mean((out - clean) ** 2))
    return 10 * math.log10(1 / mse)


def data(name: str, levels: list[str], clean: bool, batch: int) -> dict:
    ax = "ZYX" if name == "mri_t1" else "YX"
    d = {"degraded": [noisy_image(name, lv) for lv in levels], "axes": ax, "patch_size": 48, "batch_size": batch,
         "val_fraction": VAL_FRACTION, "val_patches": 8}  # fmt: skip
    if clean:
        d["clean"] = [clean_image(name) for _ in levels]
    return d


# --- runs ---------------------------------------------------------------------------------------------------------
def teacher_path(work: Path, name: str, regime: str) -> Path:
    return work / f"teacher-{name}-{regime}.pt"


def train_teachers(work: Path, names: list[str], steps: int, shard: tuple[int, int]) -> None:
    todo = list(itertools.product(names, ("paired", "noisy-only")))
    for name, regime in todo[shard[0] :: shard[1]]:
        out = teacher_path(work, name, regime)
        if out.exists():
            continue
        t0 = time.perf_counter()
        train_teacher({"data": data(name, list(NOISE), regime == "paired", 8), "model": TEACHER, "output": str(out),
                       "train": {"steps": steps, "lr": 1e-3, "warmup_steps": 50, "val_every": max(1, steps // 6),
                                 "checkpoint_every": 100, "seed": 0}})  # fmt: skip
        print(f"teacher {name} {regime}: {time.perf_counter() - t0:.0f} s", flush=True)


def student_run(work: Path, key: dict, steps: int, max_time: float | None) -> dict:
    """Train one student (a distillation method, scratch, or Noise2Void alone) and measure it."""
    name, level, seed, method = key["image"], key["noise"], key["seed"], key["method"]
    out = work / ("-".join(str(v) for v in key.values()) + ".pt")
    train = {"steps": steps, "lr": 3e-3, "warmup_steps": 20, "val_every": max(1, steps // 10), "seed": seed,
             "checkpoint_every": 10**6}  # fmt: skip
    if max_time is not None:
        train = {k: v for k, v in train.items() if k != "steps"} | {"max_time": max_time, "val_every": 50}
    paired = key["regime"] == "paired"
    if method == "n2v-scratch":
        train_teacher({"data": data(name, [level], False, 8), "model": STUDENT, "output": str(out),
                       "overwrite": True, "train": train})  # fmt: skip
    else:
        train |= TRAIN_VARIANTS.get(method, {})
        method, loss = VARIANTS.get(method, (method, {}))
        distill({"data": data(name, [level], paired, 8), "teacher": str(teacher_path(work, name, key["regime"])),
                 "student": STUDENT, "output": str(out), "overwrite": True, "loss": {"method": method, **loss},
                 "train": train})  # fmt: skip
    rec = load_checkpoint(out).record
    result = {**key, "psnr": psnr(out, name, level), "steps": rec["steps"], "seconds": rec["seconds"],
              "label_seconds": rec.get("label_seconds", 0.0),
              "validations": rec.get("validations", []), "loss_weights": rec.get("loss_weights", {})}  # fmt: skip
    out.unlink()
    return result


def plan(names: list[str], levels: list[str], seeds: list[int], methods: list[str], pilot: bool) -> list:
    """Every student run, in order: (key, budget); a time budget is the seconds skd used in that configuration.
    A pilot has the paired runs at equal steps only."""
    runs = []
    for name, level, seed in itertools.product(names, levels, seeds):
        base = {"image": name, "noise": level, "seed": seed}
        for m in methods:
            runs.append(({**base, "regime": "paired", "method": m, "budget": "steps"}, "steps"))
        if pilot:
            continue
        runs.append(({**base, "regime": "paired", "method": "scratch", "budget": "time"}, "time"))
        for m in NOISY_ONLY:
            runs.append(({**base, "regime": "noisy-only", "method": m, "budget": "steps"}, "steps"))
        for m in ("n2v-scratch", "output-kd"):
            runs.append(({**base, "regime": "noisy-only", "method": m, "budget": "time"}, "time"))
    return runs


def load_results(work: Path) -> list[dict]:
    path = work / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run_students(work: Path, runs: list[tuple[dict, str]], steps: int) -> None:
    for key, budget in runs:
        done = load_results(work)
        if any(all(r.get(k) == v for k, v in key.items()) for r in done):
            continue
        max_time = None
        if budget == "time":
            skd = [r for r in load_results(work) if r["budget"] == "steps" and r["method"] == "skd"
                   and all(r[k] == key[k] for k in ("image", "noise", "seed", "regime"))]  # fmt: skip
            if not skd:
                continue
            same = [r for r in load_results(work) if r["budget"] == "steps"
                    and all(r[k] == key[k] for k in ("image", "noise", "seed", "regime", "method"))]  # fmt: skip
            max_time = skd[0]["seconds"] - (same[0].get("label_seconds", 0.0) if same else 0.0)  # labelling counts
        result = student_run(work, key, steps, max_time)
        with open(work / "results.jsonl", "a") as f:
            f.write(json.dumps(result) + "\n")
        print(f"{key} -> {result['psnr']:.2f} dB, {result['steps']} steps, {result['seconds']:.0f} s", flush=True)


def teacher_psnrs(work: Path, names: list[str]) -> dict:
    out = {}
    for name, regime, level in itertools.product(names, ("paired", "noisy-only"), NOISE):
        path = teacher_path(work, name, regime)
        if path.exists():
            out[(name, regime, level)] = psnr(path, name, level)
    return out


# --- report -------------------------------------------------------------------------------------------------------
def paired_difference(
    results: list[dict], regime: str, budget: str, a: str, b: str, a_budget: str = "steps"
) -> dict | None:
    """Mean of PSNR(a) - PSNR(b) over matched (image, noise, seed) and its 95 % t confidence interval. At equal
    time, ``a`` is skd's own run (the time reference) unless ``a_budget`` says ``a`` also ran for skd's seconds."""
    index = {(r["image"], r["noise"], r["seed"]): r["psnr"] for r in results
             if r["regime"] == regime and r["method"] == b and r["budget"] == budget}  # fmt: skip
    diffs = [r["psnr"] - index[k] for r in results
             if r["regime"] == regime and r["method"] == a and r["budget"] == a_budget
             and (k := (r["image"], r["noise"], r["seed"])) in index]  # fmt: skip
    if not diffs:
        return None
    d = np.array(diffs)
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
    return {"regime": regime, "budget": budget, "student": STUDENT, "a": a, "b": b, "mean_db": float(d.mean()),
            "ci95": [float(d.mean() - half), float(d.mean() + half)], "n": len(d)}  # fmt: skip


def report(work: Path, quick: bool) -> None:
    results = load_results(work)
    names = sorted({r["image"] for r in results}, key=IMAGES.index)
    seeds = sorted({r["seed"] for r in results})
    teachers = teacher_psnrs(work, names)
    from napari_skd.models import build_model

    flops_ratio = count_flops(build_model(STUDENT), 256) / count_flops(build_model(TEACHER), 256)
    comparisons = [c for c in (
        *(paired_difference(results, "paired", "steps", "skd", b) for b in PAIRED if b != "skd"),
        paired_difference(results, "paired", "time", "skd", "scratch"),
        paired_difference(results, "noisy-only", "steps", "skd", "n2v-scratch"),
        paired_difference(results, "noisy-only", "time", "skd", "n2v-scratch"),
        paired_difference(results, "noisy-only", "steps", "output-kd", "n2v-scratch"),
        paired_difference(results, "noisy-only", "time", "output-kd", "n2v-scratch", a_budget="time"),
    ) if c is not None]  # fmt: skip
    gaps = []
    for regime in ("paired", "noisy-only"):
        diffs = [teachers[t] - r["psnr"] for r in results
                 if r["regime"] == regime and r["method"] == "skd" and r["budget"] == "steps"
                 and (t := (r["image"], regime, r["noise"])) in teachers]  # fmt: skip
        if diffs:
            gaps.append({"regime": regime, "budget": "steps", "student": STUDENT,
                         "teacher_minus_skd_db": float(np.mean(diffs)), "flops_ratio": flops_ratio})  # fmt: skip
    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_JSON.write_text(json.dumps({"images": names, "seeds": seeds, "noise_sigma": NOISE, "teacher": TEACHER,
                                        "comparisons": comparisons, "teacher_gap": gaps,
                                        "runs": [{k: v for k, v in r.items() if k != "validations"} for r in results],
                                        "teachers": [{"image": k[0], "regime": k[1], "noise": k[2], "psnr": v}
                                                     for k, v in teachers.items()]}, indent=1))  # fmt: skip
    write_section("distill_quality", markdown(work, results, names, seeds, teachers, comparisons, gaps, quick))
    plot(results)


def markdown(work, results, names, seeds, teachers, comparisons, gaps, quick) -> str:
    steps = max((r["steps"] for r in results if r["budget"] == "steps"), default=0)
    lines = [
        "## Distillation quality (`benchmarks/distill_quality.py`)",
        "",
        f"Machine: {machine()}; two 1-thread workers ran side by side." + (" **Quick smoke run.**" if quick else ""),
        "",
        f"Images: {', '.join(f'`{n}`' for n in names)} (`mri_t1`: 10 axial slices of the 3D volume, restored slice by "
        f"slice). Gaussian noise sigma {NOISE['low']} and {NOISE['high']} of the 1-99.8 percentile range, one fixed "
        f"realisation per image and level. Seeds {seeds}. Teacher `{TEACHER}` (one per image and regime, trained on "
        f"both noise levels); student `{STUDENT}`, {steps} steps at equal steps, batch 8, 48 x 48 patches, AdamW "
        "3e-3. PSNR on the held-out bottom quarter of rows (data range 1). Differences are paired over image x noise x "
        "seed; the interval is a 95 % t interval. At equal wall time the baseline got the seconds the skd run used.",
        "",
        "| regime | budget | a | b | mean a - b (dB) | 95 % CI | n |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        lines.append(f"| {c['regime']} | {c['budget']} | {c['a']} | {c['b']} | {c['mean_db']:+.2f} | "
                     f"[{c['ci95'][0]:+.2f}, {c['ci95'][1]:+.2f}] | {c['n']} |")  # fmt: skip
    lines += [
        "",
        "Teachers (paired): validation PSNR gained over their last 500 of "
        + ", ".join(f"`{n}` {plateau(work, n)}" for n in names)
        + " (near a plateau when small).",
        "",
    ]
    lines += ["Mean PSNR (dB) per image and noise level, over seeds (p: paired, n: noisy-only):", ""]
    cols = [("paired", m, "steps") for m in PAIRED] + [("paired", "scratch", "time")]
    cols += [("noisy-only", m, "steps") for m in NOISY_ONLY] + [("noisy-only", m, "time") for m in NOISY_ONLY[1:]]
    lines.append("| image | noise | teacher (paired) | teacher (N2V) | "
                 + " | ".join(f"{m} ({'p' if g == 'paired' else 'n'}, {b})" for g, m, b in cols) + " |")  # fmt: skip
    lines.append("|---|---|---|---|" + "---|" * len(cols))
    for name, level in itertools.product(names, NOISE):
        cells = [name, level, f"{teachers.get((name, 'paired', level), float('nan')):.2f}",
                 f"{teachers.get((name, 'noisy-only', level), float('nan')):.2f}"]  # fmt: skip
        for g, m, b in cols:
            v = [r["psnr"] for r in results if (r["image"], r["noise"], r["regime"], r["method"], r["budget"])
                 == (name, level, g, m, b)]  # fmt: skip
            cells.append(f"{np.mean(v):.2f}" if v else "")
        lines.append("| " + " | ".join(cells) + " |")
    secs = {m: np.mean([r["seconds"] for r in results
                        if (r["regime"], r["method"], r["budget"]) == ("paired", m, "steps")])
            for m in PAIRED if any(r["method"] == m for r in results)}  # fmt: skip
    lines += ["", "Mean training seconds of the equal-steps runs (paired; one 1-thread worker each, validations "
              "included): " + ", ".join(f"{m} {v:.0f} s" for m, v in secs.items()) + "."]  # fmt: skip
    for g in gaps:
        lines.append(f"\nTeacher - skd ({g['regime']}, equal steps): {g['teacher_minus_skd_db']:+.2f} dB, student "
                     f"FLOPs / teacher FLOPs = {g['flops_ratio']:.2f}.")  # fmt: skip
    lines += ["", "![validation PSNR against wall time](images/distill_quality.png)"]
    return "\n".join(lines)


def plateau(work: Path, name: str) -> str:
    """How much a paired teacher's validation PSNR still rose over its last 500 steps."""
    path = teacher_path(work, name, "paired")
    vals = [v for v in load_checkpoint(path).record.get("validations", []) if "psnr" in v] if path.exists() else []
    if not vals:
        return "(no record)"
    last = vals[-1]
    before = min(vals, key=lambda v: abs(v["step"] - (last["step"] - 500)))
    return f"{last['step']} steps: {last['psnr'] - before['psnr']:+.2f} dB"


def plot(results: list[dict]) -> None:
    """Validation PSNR against wall time, paired regime (the noisy-only runs have no clean image to validate on)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(IMAGES), figsize=(4 * len(IMAGES), 3.6))
    for ax, name in zip(axes, IMAGES, strict=True):
        for r in results:
            if (r["image"], r["seed"], r["noise"], r["regime"]) != (name, 0, "high", "paired"):
                continue
            pts = [(v["seconds"], v["psnr"]) for v in r["validations"] if "psnr" in v]
            if pts:
                ax.plot(*zip(*pts, strict=True), ".-", label=f"{r['method']} ({r['budget']})")
        ax.set_xscale("log")
        ax.set_xlabel("wall time (s)")
        ax.set_ylabel("validation PSNR (dB)")
        ax.set_title(f"{name}, sigma {NOISE['high']}, paired, seed 0", fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "images" / "distill_quality.png", dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True, help="folder for teachers and results.jsonl (kept between runs)")
    ap.add_argument("--shard", default="0/1", help="k/n: this worker's share of the runs")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--teacher-steps", type=int, default=1500)
    ap.add_argument("--student-steps", type=int, default=300)
    ap.add_argument("--images", default=",".join(IMAGES))
    ap.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    ap.add_argument("--methods", default=",".join(PAIRED), help="paired methods at equal steps")
    ap.add_argument("--report", action="store_true", help="only write the report from the results so far")
    ap.add_argument("--teachers-only", action="store_true", help="train this worker's teachers, then stop")
    ap.add_argument("--quick", action="store_true", help="a few steps only, to check the script")
    ap.add_argument("--noise", default=",".join(NOISE), help="noise levels (names of NOISE)")
    ap.add_argument("--pilot", action="store_true", help="paired runs at equal steps only; no waiting, no report")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    names, seeds = args.images.split(","), [int(s) for s in args.seeds.split(",")]
    t_steps, s_steps = (12, 6) if args.quick else (args.teacher_steps, args.student_steps)
    if not args.report:
        k, n = (int(v) for v in args.shard.split("/"))
        if not args.pilot:
            train_teachers(work, names, t_steps, (k, n))
        if args.teachers_only:
            return
        while not args.pilot and not all(
            teacher_path(work, nm, rg).exists() for nm in names for rg in ("paired", "noisy-only")
        ):
            time.sleep(10)  # the other workers' teachers
        runs = plan(names, args.noise.split(","), seeds, args.methods.split(","), args.pilot)
        configs = sorted({(r["image"], r["noise"], r["seed"]) for r, _ in runs})
        mine = {c for i, c in enumerate(configs) if i % n == k}
        run_students(work, [(r, b) for r, b in runs if (r["image"], r["noise"], r["seed"]) in mine], s_steps)
    if not args.pilot:
        report(work, args.quick)


if __name__ == "__main__":
    main()
