"""Command line: ``napari-skd info | bench``. A thin adapter: parse, call the core, print; no napari or Qt.

Exit codes: 0 success, 2 bad input or configuration (message, no traceback), 1 internal failure, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from .errors import InputError, SkdError

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own usage errors are bad input too
        self.print_usage(sys.stderr)
        self.exit(EXIT_INPUT, f"napari-skd: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from .models import PRESETS

    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = _Parser(prog="napari-skd", description=__doc__.splitlines()[0], formatter_class=fmt)
    p.add_argument("--verbose", action="store_true", help="show tracebacks of internal errors")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    info = sub.add_parser("info", help="parameters and FLOPs of a preset or a checkpoint", formatter_class=fmt)
    src = info.add_mutually_exclusive_group(required=True)
    src.add_argument("checkpoint", nargs="?", help="checkpoint file (.pt) or official Restormer .pth")
    src.add_argument("--preset", choices=list(PRESETS), help="a named architecture instead of a checkpoint")
    info.add_argument("--size", type=int, default=256, help="side of the square (or cubic) input for FLOPs")
    info.add_argument("--in-channels", type=int, default=1, help="image channels (presets only)")
    info.add_argument("--spatial-dims", type=int, choices=(2, 3), default=2, help="2D or 3D network (presets only)")

    bench = sub.add_parser(
        "bench", help="teacher vs students: parameters, FLOPs, latency and quality on a real image", formatter_class=fmt
    )
    bench.add_argument("--image", default="nuclei2d", help="a sample name (see sample_data/README.md)")
    bench.add_argument("--size", type=int, default=256, help="side of the square input timed for latency")
    bench.add_argument("--teacher", default="teacher", help="teacher preset name or checkpoint file")
    bench.add_argument("--students", nargs="+", default=["student-s", "student-xs"], help="presets or checkpoints")
    bench.add_argument("--repeats", type=int, default=3, help="timed forward passes per model (median reported)")
    bench.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    bench.add_argument(
        "--degradation",
        choices=["gaussian", "poisson_gaussian", "rician", "blur_noise"],
        help="also measure PSNR/SSIM on the held-out bottom quarter of the image under this synthetic degradation",
    )
    bench.add_argument("--sigma", type=float, default=0.05, help="noise sigma of --degradation (normalised units)")
    bench.add_argument("--peak", type=float, default=20.0, help="photons at intensity 1 (poisson_gaussian)")
    bench.add_argument("--seed", type=int, default=1234, help="seed of the evaluation noise")
    for name, what in (("train-teacher", "train a teacher (supervised, or Noise2Void without clean data)"),
                       ("distill", "distil a student from a teacher checkpoint")):  # fmt: skip
        job = sub.add_parser(name, help=what, formatter_class=fmt)
        job.add_argument("--config", required=True, help="YAML job file (see docs/examples/)")
        job.add_argument("--output", help="checkpoint to write (overrides the file's 'output')")
        job.add_argument("--steps", type=int, help="optimiser steps (overrides train.steps)")
        job.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (overrides train.device)")
        job.add_argument("--overwrite", action="store_true", help="replace an existing finished output")
        if name == "distill":
            job.add_argument("--method", help="skd, scratch, output-kd, feature-kd, skd-no-mca or skd-no-cl")
    return p


def _positive(name: str, value: int) -> int:
    if value < 1:
        raise InputError(f"--{name} must be a positive integer, got {value}")
    return value


def cmd_info(args: argparse.Namespace) -> None:
    from .models import build_model, count_flops, count_params

    size = _positive("size", args.size)
    if args.preset:
        model = build_model(
            args.preset,
            in_channels=args.in_channels,
            out_channels=args.in_channels,
            spatial_dims=args.spatial_dims,
        )
        print(f"preset: {args.preset}")
    else:
        from .checkpoint import load_checkpoint

        ck = load_checkpoint(args.checkpoint)
        model = ck.model
        print(f"checkpoint: {args.checkpoint}")
        print(f"role: {ck.role}")
        print(f"format_version: {ck.format_version}")
        print(f"normalisation: {ck.norm.model_dump() if ck.norm else 'identity'}")
        if ck.teacher_hash:
            print(f"teacher_hash: {ck.teacher_hash}")
    cfg = model.config
    print(f"architecture: {cfg.model_dump_json()}")
    print(f"params: {count_params(model)}")
    print(f"flops: {count_flops(model, size)}")
    print(f"flops_input: {'x'.join([str(size)] * cfg.spatial_dims)}")


def _bench_model(spec: str):
    """(display name, model, normalisation) of a preset name (random weights) or a checkpoint file."""
    import torch

    from .models import PRESETS, build_model

    if spec in PRESETS:
        torch.manual_seed(0)
        return spec, build_model(spec), None
    path = Path(spec)
    if not path.exists():
        raise InputError(f"{spec!r} is neither a model preset ({', '.join(PRESETS)}) nor a checkpoint file")
    from .checkpoint import load_checkpoint

    ck = load_checkpoint(path)
    return path.stem, ck.model, ck.norm


def cmd_bench(args: argparse.Namespace) -> None:
    import numpy as np

    from .data.degrade import DegradationConfig
    from .device import resolve_device
    from .evaluation import heldout_pair, psnr_ssim, restore_whole
    from .models import count_flops, count_params, latency
    from .normalize import Normalization
    from .samples import load_sample

    size = _positive("size", args.size)
    repeats = _positive("repeats", args.repeats)
    image, meta = load_sample(args.image)
    if image.ndim != 2:
        image = image[image.shape[0] // 2]
    if min(image.shape) < size:
        raise InputError(f"--size {size} is larger than the image {args.image} ({image.shape}); use a smaller size")
    device, why = resolve_device(args.device)
    models = [_bench_model(spec) for spec in [args.teacher, *args.students]]
    print(f"device: {why}")
    print(f"image: {args.image} ({meta['modality']}), {image.shape[0]}x{image.shape[1]}")
    if args.degradation:
        norm = models[0][2] or Normalization(low=float(np.percentile(image, 1)), high=float(np.percentile(image, 99.8)))
        deg = DegradationConfig(kind=args.degradation, sigma=args.sigma, peak=args.peak)
        clean, noisy = heldout_pair(image, norm, deg, 0.25, args.seed)
        print(f"quality: held-out bottom {clean.shape[0]} rows, {deg.kind} (sigma {deg.sigma}, peak {deg.peak}), "
              f"seed {args.seed}, normalised units")  # fmt: skip
        print(f"psnr input: {psnr_ssim(clean, noisy)[0]:.2f}")
        for (name, model, _), role in zip(models, ["teacher"] + ["student"] * len(args.students), strict=True):
            psnr, ssim = psnr_ssim(clean, restore_whole(model, noisy))
            print(f"psnr {role} {name}: {psnr:.2f}  ssim: {ssim:.4f}")
    print(f"{'model':<22}{'params':>12}{'GFLOP':>10}{'latency s':>12}{'flops/teacher':>15}{'speed-up':>10}")
    rows = []
    for name, model, _ in models:
        model = model.to(device).eval()
        rows.append((name, count_params(model), count_flops(model, size), latency(model, size, repeats=repeats)))
        _, p, f, t = rows[-1]
        print(f"{name:<22}{p:>12,}{f / 1e9:>10.2f}{t:>12.3f}{f / rows[0][2]:>15.3f}{rows[0][3] / t:>9.1f}x")
    for name, _, _, t in rows[1:]:
        print(f"latency ratio {name}/{rows[0][0]}: {t / rows[0][3]:.3f}")


def _job(args: argparse.Namespace) -> dict:
    import yaml

    path = Path(args.config)
    if not path.is_file():
        raise InputError(f"job file not found: {path}")
    try:
        job = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(job, dict):
        raise InputError(f"{path} must hold a mapping of settings (key: value), not {type(job).__name__}")
    train = job.setdefault("train", {})
    for key, value in (("steps", args.steps), ("device", args.device)):
        if value is not None:
            train[key] = value
    if args.output:
        job["output"] = args.output
    if args.overwrite:
        job["overwrite"] = True
    if getattr(args, "method", None):
        job.setdefault("loss", {})["method"] = args.method
    return job


def _printer():
    """Progress as log lines (every ~10 % and at validations) from the main process only."""
    import os

    if os.environ.get("RANK", "0") != "0":
        return None

    def show(e) -> None:
        every = max(1, e.total // 10)
        if e.phase == "train" and not e.metrics and e.step % every and e.step != e.total:
            return
        losses = " ".join(f"{k}={v:.4g}" for k, v in e.losses.items())
        metrics = " ".join(f"{k}={v:.4g}" for k, v in e.metrics.items())
        eta = f" eta {e.eta_s:.0f}s" if e.eta_s is not None else ""
        print(f"[{e.phase}] {e.step}/{e.total} {losses} {metrics}{eta} {e.message}".rstrip(), flush=True)

    return show


def _say(text: str) -> None:
    """Print from the main process only (under torchrun every rank runs this code)."""
    import os

    if os.environ.get("RANK", "0") == "0":
        print(text, flush=True)


def cmd_train_teacher(args: argparse.Namespace) -> None:
    from .distillation.api import train_teacher

    _say(f"saved {train_teacher(_job(args), progress=_printer())}")


def cmd_distill(args: argparse.Namespace) -> None:
    from .distillation.api import distill

    _say(f"saved {distill(_job(args), progress=_printer())}")


COMMANDS = {"info": cmd_info, "bench": cmd_bench, "train-teacher": cmd_train_teacher, "distill": cmd_distill}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except SkdError as exc:
        print(f"napari-skd: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("napari-skd: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # an internal failure: say so plainly, traceback only on request
        if args.verbose:
            traceback.print_exc()
        print(
            f"napari-skd: internal error: {type(exc).__name__}: {exc} (rerun with --verbose for details)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
