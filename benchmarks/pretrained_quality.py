"""Does the shipped teacher make distillation pay? The end-to-end protocol of issue 20.

At equal user time T (pretraining is not counted, like any shipped model's), on real held-out rows:

- ``pipeline``: fine-tune the shipped teacher ``pretrained:general-2d`` on the user's image for a share of T
  (``init``; keep_best on the held-out rows), then distil ``unet-s`` from it for the rest of T (``skd-rec``: L1 to the
  clean image plus beta L1 to the teacher, whose labels are computed once ahead; without clean data, L1 to the
  teacher). The teacher's training, labelling and the student's training all count.
- ``pipeline-init``: the same, the student starting from ``pretrained:general-2d-student``.
- ``scratch`` (clean pairs exist) / ``n2v`` (noisy images only): ``unet-s`` trained alone for all of T.
- zero-shot: the three generalists with no training (each input mapped by its own percentiles), against BM3D
  (the ``bm3d`` package, installed only in the benchmark's environment: its licence is for non-commercial use), and
  scikit-image's non-local means and total variation, their parameters set from the noisy image alone (noise level
  from ``estimate_sigma``).

Images: every 2D image of ``sample_data/`` (nuclei2d, cell, ct_slice) and five axial slices of the MR volume,
scaled to [0, 1] by their 1 and 99.8 percentiles; Gaussian noise (sigma 0.08) and Poisson-Gaussian noise (peak 20
photons at 1); three seeds (noise realisation and training seed). Training sees the top 75 % of rows; PSNR and SSIM
are measured on the held-out bottom rows against the clean image (data range 1). Paired differences with 95 % t
intervals over image x noise x seed.

    pip install bm3d                                                     # benchmark only, never a dependency
    OMP_NUM_THREADS=1 python benchmarks/pretrained_quality.py --work W --shard 0/2 &
    OMP_NUM_THREADS=1 python benchmarks/pretrained_quality.py --work W --shard 1/2 &
    python benchmarks/pretrained_quality.py --work W --report            # tables, JSON from W/results.jsonl

Finished runs are kept in ``W/results.jsonl``: a rerun continues where it stopped.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import threading
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from skimage.metrics import structural_similarity

from _images import unit_sample
from _report import machine, write_section
from napari_skd import distill, train_teacher
from napari_skd.checkpoint import load_checkpoint
from napari_skd.models import count_flops

ROOT = Path(__file__).resolve().parents[1]
RESULTS_JSON = ROOT / "benchmarks" / "results" / "pretrained_quality.json"
IMAGES = ("nuclei2d", "cell", "ct_slice", "mri_t1")
NOISES = ("gaussian", "poisson")
SIGMA, PEAK = 0.08, 20.0
SEEDS = (0, 1, 2)
TEACHER, CNN_TEACHER, STUDENT = "pretrained:general-2d", "pretrained:general-2d-cnn", "pretrained:general-2d-student"
GENERALISTS = {"zero-shot-teacher": TEACHER, "zero-shot-cnn": CNN_TEACHER, "zero-shot-student": STUDENT}
STUDENT_LR = {"pipeline": 3e-3, "pipeline-init": 1e-3}  # from scratch as `scratch`; from the shipped student: lower
FINETUNE_SHARE = 0.3  # of T for the teacher's fine-tuning; the student gets the rest (labelling included)
VAL_FRACTION = 0.25
_LABEL_RATE: list[float] = []  # the teacher's seconds per pixel on this worker, measured once


# --- data ---------------------------------------------------------------------------------------------------------
def clean_image(name: str) -> np.ndarray:
    """The clean image in [0, 1] (1-99.8 percentiles): YX, or ZYX for five axial MR slices 12 mm apart."""
    return unit_sample(name, slice(70, 130, 12))


def noisy_image(name: str, noise: str, seed: int) -> np.ndarray:
    clean = clean_image(name)
    rng = np.random.default_rng([IMAGES.index(name), NOISES.index(noise), seed, 2026])
    if noise == "gaussian":
        return (clean + SIGMA * rng.standard_normal(clean.shape)).astype(np.float32)
    return (rng.poisson(np.clip(clean, 0, None) * PEAK) / PEAK).astype(np.float32)


def heldout(a: np.ndarray) -> np.ndarray:
    """The bottom rows that training never sees, cropped to multiples of 8."""
    rows = math.ceil(a.shape[-2] * VAL_FRACTION) // 8 * 8
    return a[..., a.shape[-2] - rows :, : a.shape[-1] // 8 * 8]


def scores(out: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """PSNR over the whole held-out region and mean SSIM over its planes (data range 1)."""
    psnr = 10 * math.log10(1 / float(np.mean((out - clean) ** 2)))
    planes = zip(out.reshape(-1, *out.shape[-2:]), clean.reshape(-1, *clean.shape[-2:]), strict=True)
    return psnr, float(np.mean([structural_similarity(c, o, data_range=1.0) for o, c in planes]))


def run_model(path: str | Path, noisy: np.ndarray, per_input: bool) -> np.ndarray:
    """A checkpoint on the held-out rows of ``noisy``, plane by plane, in the image's [0, 1] units: with the
    checkpoint's normalisation, or a generalist's (the whole noisy image's own 1/99.8 percentiles)."""
    ck = load_checkpoint(path)
    if per_input:
        lo, hi = np.percentile(noisy, (1, 99.8))
        apply, invert = (lambda x: (x - lo) / (hi - lo)), (lambda y: y * (hi - lo) + lo)
    else:
        apply, invert = ck.norm.apply, ck.norm.invert
    region = heldout(noisy)
    planes = region.reshape(-1, *region.shape[-2:])
    with torch.inference_mode():
        x = torch.from_numpy(np.asarray(apply(planes), dtype=np.float32)[:, None])
        return np.asarray(invert(ck.model.eval()(x).numpy()[:, 0])).reshape(region.shape)


def label_seconds(noisy: np.ndarray) -> float:
    """Seconds the distillation spends before training (the teacher's labels of the whole image, set-up), so the
    pipeline's student gets what remains of T."""
    if not _LABEL_RATE:
        model = load_checkpoint(TEACHER).model.eval()
        x = torch.zeros(1, 1, 256, 256)
        with torch.inference_mode():
            model(x)
            t0 = time.perf_counter()
            model(x)
        _LABEL_RATE.append((time.perf_counter() - t0) / 256**2)
    return 0.5 + 1.2 * noisy.size * _LABEL_RATE[0]


def data(name: str, noisy: np.ndarray, clean: np.ndarray | None) -> dict:
    d = {"degraded": [noisy], "axes": "ZYX" if noisy.ndim == 3 else "YX", "patch_size": 48, "batch_size": 8,
         "val_fraction": VAL_FRACTION, "val_patches": 8}  # fmt: skip
    if clean is not None:
        d["clean"] = [clean]
    return d


# --- runs ---------------------------------------------------------------------------------------------------------
def train(budget: float, seed: int, lr: float, val_every: int = 50) -> dict:
    return {"max_time": max(2.0, budget), "lr": lr, "warmup_steps": 10, "val_every": val_every, "seed": seed,
            "checkpoint_every": 10**6}  # fmt: skip


def method_run(work: Path, key: dict, budget: float) -> dict:
    """One trained method at user time ``budget``; returns its scores and the seconds the user paid."""
    name, noise, seed, method, paired = (
        key["image"],
        key["noise"],
        key["seed"],
        key["method"],
        key["regime"] == "paired",
    )
    clean, noisy = clean_image(name), noisy_image(name, noise, seed)
    stem = work / "-".join(str(v) for v in key.values())
    result: dict = dict(key)
    t0 = time.perf_counter()
    if method in ("scratch", "n2v"):
        out = train_teacher({"data": data(name, noisy, clean if paired else None), "model": "unet-s",
                             "mode": "supervised" if paired else "self-supervised", "output": f"{stem}.pt",
                             "overwrite": True, "train": train(budget, seed, 3e-3)})  # fmt: skip
        student_path = out
    else:
        teacher_path = train_teacher({"data": data(name, noisy, clean if paired else None), "init": TEACHER,
                                      "mode": "supervised" if paired else "self-supervised",
                                      "output": f"{stem}-teacher.pt", "overwrite": True,
                                      "train": train(FINETUNE_SHARE * budget, seed, 1e-4, 10)})  # fmt: skip
        spent = time.perf_counter() - t0
        job = {"data": data(name, noisy, clean if paired else None), "teacher": str(teacher_path),
               "student": "unet-s", "loss": {"method": "skd-rec"}, "output": f"{stem}.pt", "overwrite": True,
               "train": train(budget - spent - label_seconds(noisy), seed, STUDENT_LR[method])}  # fmt: skip
        if method == "pipeline-init":
            job["student_init"] = STUDENT
        deadline = threading.Event()  # the user's time is up: the student stops there, whatever its set-up cost
        timer = threading.Timer(budget - (time.perf_counter() - t0), deadline.set)
        timer.start()
        try:
            student_path = distill(job, cancel=deadline)
        finally:
            timer.cancel()
        Path(f"{stem}.pt.state").unlink(missing_ok=True)
        t_rec = load_checkpoint(teacher_path).record
        result["teacher_psnr"], result["teacher_ssim"] = scores(run_model(teacher_path, noisy, False), heldout(clean))
        result["teacher_steps"], result["teacher_seconds"] = t_rec["steps"], t_rec["seconds"]
        result["teacher_kept"] = t_rec.get("kept")
        Path(teacher_path).unlink()
    result["user_seconds"] = time.perf_counter() - t0
    rec = load_checkpoint(student_path).record
    result["psnr"], result["ssim"] = scores(run_model(student_path, noisy, False), heldout(clean))
    result["steps"], result["kept"] = rec["steps"], rec.get("kept")
    Path(student_path).unlink()
    return result


def zero_shot_run(key: dict) -> list[dict]:
    """The generalists and the classical denoisers on one noisy image (no training), with their seconds."""
    from skimage.restoration import denoise_nl_means, denoise_tv_chambolle, estimate_sigma

    clean, noisy = clean_image(key["image"]), noisy_image(key["image"], key["noise"], key["seed"])
    ref = heldout(clean)
    out = []

    def add(model: str, restored: np.ndarray, seconds: float) -> None:
        psnr, ssim = scores(restored, ref)
        out.append({**key, "model": model, "psnr": psnr, "ssim": ssim, "seconds": seconds})

    for model, name in GENERALISTS.items():
        t0 = time.perf_counter()
        add(model, run_model(name, noisy, True), time.perf_counter() - t0)
    region = heldout(noisy)
    planes = region.reshape(-1, *region.shape[-2:])
    sigma = [float(estimate_sigma(p)) for p in planes]  # from the noisy image alone
    classical = {
        "nlm": lambda p, s: denoise_nl_means(p, h=0.8 * s, sigma=s, patch_size=5, patch_distance=6, fast_mode=True),
        "tv": lambda p, s: denoise_tv_chambolle(p, weight=s),
    }
    try:
        import bm3d

        classical["bm3d"] = lambda p, s: bm3d.bm3d(p, sigma_psd=s)
    except ImportError:
        print("bm3d is not installed (pip install bm3d): skipped", flush=True)
    for model, fn in classical.items():
        t0 = time.perf_counter()
        restored = np.stack([fn(p, s) for p, s in zip(planes, sigma, strict=True)]).reshape(region.shape)
        add(model, restored.astype(np.float32), time.perf_counter() - t0)
    return out


def plan(images: list[str], seeds: list[int]) -> list[dict]:
    """Every run, seed by seed (a stopped protocol has whole seeds)."""
    runs = []
    for seed, name, noise in itertools.product(seeds, images, NOISES):
        base = {"image": name, "noise": noise, "seed": seed}
        runs.append({**base, "regime": "none", "method": "zero-shot"})
        for regime, alone in (("paired", "scratch"), ("noisy-only", "n2v")):
            for method in ("pipeline", "pipeline-init", alone):
                runs.append({**base, "regime": regime, "method": method})
    return runs


def load_results(work: Path) -> list[dict]:
    path = work / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run_all(work: Path, runs: list[dict], budget: float) -> None:
    for key in runs:
        if any(all(r.get(k) == v for k, v in key.items()) for r in load_results(work)):
            continue
        t0 = time.perf_counter()
        if key["method"] == "zero-shot":
            results = zero_shot_run({k: key[k] for k in ("image", "noise", "seed")})
            results = [{**r, "regime": "none", "method": "zero-shot", "budget_s": budget} for r in results]
        else:
            results = [{**method_run(work, key, budget), "budget_s": budget}]
        with open(work / "results.jsonl", "a") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")
        best = ", ".join(f"{r.get('model', r['method'])} {r['psnr']:.2f}" for r in results)
        print(f"{key} -> {best} dB ({time.perf_counter() - t0:.0f} s)", flush=True)


# --- report -------------------------------------------------------------------------------------------------------
def _table(results: list[dict]) -> dict[tuple, float]:
    """(regime, method, image, noise, seed) -> PSNR; zero-shot rows are keyed by model under every regime."""
    t = {}
    for r in results:
        method = r.get("model", r["method"])
        regimes = ("paired", "noisy-only") if r["regime"] == "none" else (r["regime"],)
        for regime in regimes:
            t[(regime, method, r["image"], r["noise"], r["seed"])] = r["psnr"]
    return t


def paired_difference(table: dict, regime: str, a: str, b: str, noises: tuple[str, ...] = NOISES) -> dict | None:
    keys = {k[2:] for k in table if k[0] == regime and k[1] == a and k[3] in noises}
    diffs = [table[(regime, a, *k)] - table[(regime, b, *k)] for k in sorted(keys) if (regime, b, *k) in table]
    if not diffs:
        return None
    d = np.array(diffs)
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
    return {"regime": regime, "a": a, "b": b, "noise": "+".join(noises), "mean_db": float(d.mean()),
            "ci95": [float(d.mean() - half), float(d.mean() + half)], "n": len(d)}  # fmt: skip


def report(work: Path) -> None:
    results = load_results(work)
    table = _table(results)
    images = [i for i in IMAGES if any(r["image"] == i for r in results)]
    seeds = sorted({r["seed"] for r in results})
    budget = max((r.get("budget_s", 0) for r in results), default=0)
    comparisons = [c for c in (
        paired_difference(table, "paired", "pipeline", "scratch"),
        paired_difference(table, "paired", "pipeline-init", "scratch"),
        paired_difference(table, "paired", "pipeline-init", "pipeline"),
        paired_difference(table, "paired", "zero-shot-student", "scratch"),
        paired_difference(table, "noisy-only", "pipeline", "n2v"),
        paired_difference(table, "noisy-only", "pipeline-init", "n2v"),
        paired_difference(table, "noisy-only", "pipeline-init", "pipeline"),
        paired_difference(table, "noisy-only", "zero-shot-student", "n2v"),
        paired_difference(table, "paired", "zero-shot-student", "bm3d", ("gaussian",)),
        paired_difference(table, "paired", "zero-shot-teacher", "bm3d", ("gaussian",)),
        paired_difference(table, "paired", "zero-shot-cnn", "bm3d", ("gaussian",)),
        paired_difference(table, "paired", "zero-shot-student", "bm3d"),
        paired_difference(table, "paired", "zero-shot-student", "nlm"),
        paired_difference(table, "paired", "zero-shot-student", "tv"),
    ) if c is not None]  # fmt: skip
    for c in comparisons:  # zero-shot rows do not depend on the regime
        if c["a"].startswith("zero-shot") and c["b"] in ("bm3d", "nlm", "tv"):
            c["regime"] = "zero-shot"
    zero = [r for r in results if r["regime"] == "none"]
    groups = _group(zero, ("image", "noise", "model"), ("psnr", "ssim", "seconds"))
    zero_shot = [{"image": i, "noise": n, "model": m, "psnr": float(np.mean(v)), "ssim": float(np.mean(s)),
                  "seconds": float(np.mean(t))} for (i, n, m), (v, s, t) in groups.items()]  # fmt: skip
    trained = [r for r in results if r["regime"] != "none"]
    flops_ratio = count_flops(load_checkpoint(STUDENT).model, 256) / count_flops(load_checkpoint(TEACHER).model, 256)
    gaps, finetune = [], []
    for regime in ("paired", "noisy-only"):
        runs = [r for r in trained if r["regime"] == regime and "teacher_psnr" in r]
        if runs:
            gap = float(np.mean([r["teacher_psnr"] - r["psnr"] for r in runs]))
            gaps.append({"regime": regime, "teacher_minus_student_db": gap, "flops_ratio": flops_ratio})
        for image in images:
            rows = [r for r in runs if r["image"] == image]
            zs = [table[("paired", "zero-shot-teacher", image, r["noise"], r["seed"])] for r in rows]
            if rows:
                gain = float(np.mean([r["teacher_psnr"] for r in rows]) - np.mean(zs))
                finetune.append(
                    {"regime": regime, "image": image, "finetuned_minus_zero_shot_db": gain, "n": len(rows)}
                )
    methods = [m for m in ("pipeline", "pipeline-init", "scratch", "n2v") if any(r["method"] == m for r in trained)]
    seconds = {m: float(np.mean([r["user_seconds"] for r in trained if r["method"] == m])) for m in methods}
    speed = _speed(zero)
    named = [{**r, "m": r.get("model", r["method"])} for r in results]
    means = {(reg, m): float(np.mean(v)) for (reg, m), (v,) in _group(named, ("regime", "m"), ("psnr",)).items()}
    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_JSON.write_text(json.dumps({
        "images": images, "seeds": seeds, "budget_s": budget, "comparisons": comparisons, "zero_shot": zero_shot,
        "teacher_gap": gaps, "finetune_vs_zero_shot": finetune, "user_seconds": seconds, "speed": speed,
        "machine": machine(), "runs": trained}, indent=1))  # fmt: skip
    write_section("pretrained_quality", markdown(images, seeds, budget, comparisons, zero_shot, gaps, finetune,
                                                 seconds, speed, means))  # fmt: skip


def _group(rows: list[dict], keys: tuple[str, ...], values: tuple[str, ...]) -> dict:
    out: dict = {}
    for r in rows:
        k = tuple(r[x] for x in keys)
        out.setdefault(k, tuple([] for _ in values))
        for lst, v in zip(out[k], values, strict=True):
            lst.append(r[v])
    return out


def _speed(zero: list[dict]) -> dict:
    """Median seconds per image of each zero-shot method and BM3D's time over the student's (same images, 1 thread)."""
    med = {m: float(np.median([r["seconds"] for r in zero if r["model"] == m])) for m in {r["model"] for r in zero}}
    out = {"median_seconds": med}
    if "bm3d" in med and "zero-shot-student" in med:
        out["bm3d_over_student"] = med["bm3d"] / med["zero-shot-student"]
    return out


def markdown(images, seeds, budget, comparisons, zero_shot, gaps, finetune, seconds, speed, means) -> str:
    lines = [
        "## A shipped teacher, end to end (`benchmarks/pretrained_quality.py`)",
        "",
        f"Machine: {machine()}; two 1-thread workers. Images: {', '.join(images)} (MR: five axial slices); Gaussian "
        f"noise sigma {SIGMA} and Poisson-Gaussian noise at {PEAK:g} photons; seeds {seeds}; equal user time "
        f"T = {budget:g} s per method (the shipped models' pretraining is not counted). `pipeline`: "
        f"`{TEACHER}` fine-tuned for {FINETUNE_SHARE:.0%} of T (keep_best on the held-out rows), then `unet-s` "
        "distilled (skd-rec, labels ahead) for the rest; `pipeline-init`: the student starts from "
        f"`{STUDENT}`. PSNR in dB on held-out rows (data range 1). Paired differences, 95 % t intervals.",
        "",
        "| regime | a | b | noise | a - b (dB) | 95 % CI | n |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        lines.append(f"| {c['regime']} | {c['a']} | {c['b']} | {c['noise']} | {c['mean_db']:+.2f} | "
                     f"[{c['ci95'][0]:+.2f}, {c['ci95'][1]:+.2f}] | {c['n']} |")  # fmt: skip
    lines += ["", "Mean PSNR per method (dB, over images, noises and seeds):", "",
              "| regime | method | PSNR |", "|---|---|---|"]  # fmt: skip
    for (regime, method), v in sorted(means.items()):
        lines.append(f"| {regime if regime != 'none' else 'zero-shot'} | {method} | {v:.2f} |")
    lines += ["", "Zero-shot, mean over seeds (dB / SSIM / seconds per image on one thread):", "",
              "| image | noise | " + " | ".join(sorted({z['model'] for z in zero_shot})) + " |",
              "|---|---|" + "---|" * len({z["model"] for z in zero_shot})]  # fmt: skip
    models = sorted({z["model"] for z in zero_shot})
    for image, noise in itertools.product(images, NOISES):
        row = {z["model"]: z for z in zero_shot if z["image"] == image and z["noise"] == noise}
        if row:
            cells = [f"{row[m]['psnr']:.2f} / {row[m]['ssim']:.3f} / {row[m]['seconds']:.2f}" if m in row else "-"
                     for m in models]  # fmt: skip
            lines.append(f"| {image} | {noise} | " + " | ".join(cells) + " |")
    if "bm3d_over_student" in speed:
        lines += ["", f"BM3D takes {speed['bm3d_over_student']:.0f}x the zero-shot student's time (median per image)."]
    lines += ["", "User seconds per method (mean): " + ", ".join(f"{m} {s:.0f} s" for m, s in seconds.items()) + "."]
    for g in gaps:
        lines.append(f"- {g['regime']}: fine-tuned teacher minus student {g['teacher_minus_student_db']:+.2f} "
                     f"dB (student FLOPs {g['flops_ratio']:.2f}x the teacher's).")  # fmt: skip
    lines += ["", "Fine-tuned teacher minus the zero-shot teacher, per image (mean over noises and seeds):", ""]
    for f in finetune:
        lines.append(f"- {f['regime']}, {f['image']}: {f['finetuned_minus_zero_shot_db']:+.2f} dB (n = {f['n']})")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--shard", default="0/1", help="i/n: run every n-th run from the i-th")
    p.add_argument("--budget", type=float, default=60.0, help="user seconds T per method")
    p.add_argument("--images", nargs="+", default=list(IMAGES))
    p.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    p.add_argument("--report", action="store_true")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.report:
        report(args.work)
        return
    torch.set_num_threads(1)
    i, n = (int(v) for v in args.shard.split("/"))
    run_all(args.work, plan(args.images, args.seeds)[i::n], args.budget)


if __name__ == "__main__":
    main()
