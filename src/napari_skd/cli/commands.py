"""The subcommands: each parses its arguments, calls one core function and prints the result.

The heavy parts a single command needs (training, bioimage.io export, the speed table, conversion) are imported
inside that command, so that the others and ``--help`` do not load them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import load_checkpoint
from ..data.degrade import DegradationConfig
from ..describe import describe_checkpoint, flops_text, training_record
from ..device import resolve_device
from ..errors import InputError
from ..evaluation import heldout_pair, psnr_ssim, restore_whole
from ..io import open_image
from ..models import PRESETS, build_model, count_flops, count_params, latency
from ..normalize import Normalization
from ..pretrained import is_pretrained_name
from ..restoration.job import run_restore_job
from ..samples import SAMPLES, load_sample
from .jobs import load_job
from .report import progress_printer, say


def _positive(name: str, value: int) -> int:
    if value < 1:
        raise InputError(f"--{name} must be a positive integer, got {value}")
    return value


def cmd_info(args: argparse.Namespace, cancel=None) -> None:

    size = _positive("size", args.size)
    if args.preset:
        channels = _positive("in-channels", args.in_channels)
        model = build_model(
            args.preset,
            in_channels=channels,
            out_channels=channels,
            spatial_dims=args.spatial_dims,
        )
        print(f"preset: {args.preset}")
    else:
        ck = load_checkpoint(args.checkpoint)
        model = ck.model
        print(f"checkpoint: {args.checkpoint}")
        print(f"role: {ck.role}")
        print(f"format_version: {ck.format_version}")
        norm = ck.norm.model_dump() if ck.norm else "identity"
        print(f"normalisation: {describe_checkpoint(ck)['normalisation'] if ck.per_input else norm}")
        if ck.teacher_hash:
            print(f"teacher_hash: {ck.teacher_hash}")
    cfg = model.config
    flops = count_flops(model, size)
    print(f"architecture: {cfg.model_dump_json()}")
    print(f"params: {count_params(model)}")
    print(f"flops: {flops}")  # machine lines above (parsed by scripts): keep their names and formats
    print(f"flops_input: {'x'.join([str(size)] * cfg.spatial_dims)}")
    print(f"compute: {flops_text(flops, size, cfg.spatial_dims)} (--size changes the input)")
    if not args.preset:
        record = training_record(ck)
        print("training record:" + ("" if record else " none stored in this file"))
        for label, text in record.items():
            print(f"  {label}: {text}")


def _bench_model(spec: str):
    """(display name, model, normalisation) of a preset name (random weights) or a checkpoint file."""
    if spec in PRESETS:
        torch.manual_seed(0)
        return spec, build_model(spec), None
    path = Path(spec)
    if not path.exists() and not is_pretrained_name(spec):
        raise InputError(f"{spec!r} is neither a model preset ({', '.join(PRESETS)}) nor a checkpoint file")

    ck = load_checkpoint(spec)
    if ck.per_input:  # a generalist: the image's own percentiles (the fallback below)
        return spec, ck.model, None
    return path.stem, ck.model, ck.norm


def bench_image(spec: str, axes: str | None = None) -> tuple[np.ndarray, str]:
    """The 2D plane ``bench`` measures on, from a sample name or an image file, and a line saying what it is.

    A stack gives one YX plane: the middle Z slice, the first channel and the first time point (said in the line).
    """
    if spec in SAMPLES:
        data, meta = load_sample(spec)
        image = open_image(data, axes=meta["axes"])
        name = f"{spec} ({meta['modality']})"
    elif Path(spec).exists():
        image = open_image(spec, axes=axes)
        name = spec
    else:
        raise InputError(
            f"--image {spec!r} is neither a sample name ({', '.join(SAMPLES)}) nor an existing file or folder: "
            "give a sample name or the path of your own image (TIFF, OME-Zarr, NIfTI or DICOM)"
        )
    picks = {a: n // 2 if a == "Z" else 0 for a, n in zip(image.axes, image.shape, strict=True) if a not in "YX"}
    plane = np.asarray(image.data[tuple(picks.get(a, slice(None)) for a in image.axes)])
    if image.axes.index("Y") > image.axes.index("X"):
        plane = plane.T
    sizes = dict(zip(image.axes, image.shape, strict=True))
    took = ", ".join(
        f"{a} {i} ({'middle' if a == 'Z' else 'first'} of {sizes[a]})" for a, i in picks.items() if sizes[a] > 1
    )
    where = f": {took}, from {image.axes} {'x'.join(map(str, image.shape))}" if took else ""
    return plane, f"{name}, {plane.shape[0]}x{plane.shape[1]} (YX){where}"


def cmd_bench(args: argparse.Namespace, cancel=None) -> None:
    if args.presets is not None:
        return _bench_presets(args)

    size = _positive("size", args.size)
    repeats = _positive("repeats", args.repeats)
    image, what = bench_image(args.image, args.axes)
    if min(image.shape) < size:
        raise InputError(f"--size {size} is larger than the image {args.image} ({image.shape}); use a smaller size")
    device, why = resolve_device(args.device)
    models = [_bench_model(spec) for spec in [args.teacher, *args.students]]
    print(f"device: {why}")
    print(f"image: {what}")
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


def _bench_presets(args: argparse.Namespace) -> None:
    """The preset speed table of docs/benchmarks.md, measured here."""
    from ..speed import format_table, matmul_peak, preset_rows

    unknown = [p for p in args.presets if p not in PRESETS]
    if unknown:
        raise InputError(f"unknown preset(s) {', '.join(unknown)}; choose from {', '.join(PRESETS)}")
    image, what = bench_image(args.image, args.axes)
    device, why = resolve_device(args.device)
    print(f"device: {why}")
    print(f"image: {what}")
    peak = matmul_peak(device)
    print(f"dense float32 matmul: {peak:.1f} GFLOP/s")
    rows = preset_rows(args.presets or list(PRESETS), image, device, log=say)
    print("\n".join(format_table(rows, peak)))


def cmd_train_teacher(args: argparse.Namespace, cancel=None) -> None:
    from ..distillation.api import train_teacher

    say(f"saved {train_teacher(load_job(args), progress=progress_printer(args.quiet), cancel=cancel)}")


def cmd_distill(args: argparse.Namespace, cancel=None) -> None:
    from ..distillation.api import distill

    say(f"saved {distill(load_job(args), progress=progress_printer(args.quiet), cancel=cancel)}")


def cmd_restore(args: argparse.Namespace, cancel=None) -> None:

    job = load_job(args)
    if args.inputs:
        job["input"] = list(args.inputs)
    elif isinstance(job.get("input"), str):  # one path in the YAML file, or one --input
        job["input"] = [job["input"]]
    outcomes = run_restore_job(job, progress=progress_printer(args.quiet), cancel=cancel)
    for o in outcomes:
        say(o.describe())
        for line in o.qc.lines() if o.qc is not None else ():
            say(line)
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        raise InputError(f"{len(failed)} of {len(outcomes)} inputs failed (see the lines above)")


def cmd_convert(args: argparse.Namespace, cancel=None) -> None:
    from ..io.convert import to_ome_zarr

    out = to_ome_zarr(args.input, args.output, axes=args.axes, chunks=args.chunks, overwrite=args.overwrite,
                      pyramid_levels=args.pyramid_levels)  # fmt: skip
    say(f"saved {out}")


def cmd_export(args: argparse.Namespace, cancel=None) -> None:
    from ..export import export_bioimageio

    path = export_bioimageio(
        args.checkpoint, args.output, name=args.name, description=args.description,
        authors=[_author(a) for a in args.author or []] or None, license=args.license, test_size=args.test_size,
        onnx=not args.no_onnx, halo=args.halo, overwrite=args.overwrite, include_paths=args.include_paths,
        test_image=open_image(args.test_image, args.test_axes) if args.test_image else None,
    )  # fmt: skip
    say(f"saved {path} (bioimage.io package, validated)")


def _author(text: str) -> str | dict[str, str]:
    """``Jane Doe`` or ``Jane Doe; affiliation=EMBL; orcid=0000-0002-1825-0097`` as an export author."""
    name, *fields = (part.strip() for part in text.split(";"))
    extra = dict(f.split("=", 1) for f in fields if "=" in f)
    if any("=" not in f for f in fields if f):
        raise InputError(f"--author {text!r}: expected 'Name' or 'Name; affiliation=...; email=...; orcid=...'")
    return {"name": name, **{k.strip(): v.strip() for k, v in extra.items()}} if extra else name


COMMANDS = {
    "info": cmd_info,
    "bench": cmd_bench,
    "train-teacher": cmd_train_teacher,
    "distill": cmd_distill,
    "export": cmd_export,
    "restore": cmd_restore,
    "convert": cmd_convert,
}
