"""The human-facing parts of a bioimage.io package: test image, cover and README, made from a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from ..checkpoint import Checkpoint
from ..describe import describe_checkpoint
from ..errors import InputError
from ..io import Image as ImageData
from ..samples import load_sample

SKD_CITATION = (
    "Zhang & Yan, Soft Knowledge Distillation with Multi-Dimensional Cross-Net Attention for Image Restoration Models "
    "Compression, ICASSP 2025 (arXiv:2501.09321)"
)
RESTORMER_CITATION = (
    "Zamir, Arora, Khan, Hayat, Khan & Yang, Restormer: Efficient Transformer for High-Resolution Image Restoration, "
    "CVPR 2022 (arXiv:2111.09881)"
)
SKD_DOI = "10.48550/arXiv.2501.09321"  # arXiv DOIs: 10.48550/arXiv.<id>
RESTORMER_DOI = "10.48550/arXiv.2111.09881"


def make_test_input(ck: Checkpoint, side: int, image: ImageData | None = None) -> tuple[np.ndarray, str]:
    """A ``(1, C, [Z,] Y, X)`` float32 test input in raw intensity units, and where it comes from.

    With ``image``: its centre crop, unchanged (see ``crop_test_image``). Otherwise 2D one-channel models get a centre
    crop of the ``nuclei2d`` sample, others a seeded smooth random image; either is mapped linearly so its
    1st / 99.8th percentiles land on the checkpoint's ``low`` / ``high`` (0 / 1 for identity normalisation), i.e.
    into the intensity range the model was trained on.
    """
    if image is not None:
        return crop_test_image(ck, side, image)
    cfg = ck.config
    shape = (cfg.in_channels, *([side] * cfg.spatial_dims))
    image, source = None, ""
    if cfg.spatial_dims == 2 and cfg.in_channels == 1:
        data, _ = load_sample("nuclei2d")
        if min(data.shape) >= side:
            y0, x0 = ((s - side) // 2 for s in data.shape)
            image = data[None, y0 : y0 + side, x0 : x0 + side].astype(np.float64)
            source = f"centre {side} x {side} crop of the napari-skd sample 'nuclei2d' (DSB 2018 nuclei)"
    if image is None:
        rng = np.random.default_rng(0)
        smooth = gaussian_filter(rng.random(shape), sigma=(0, *[side / 16] * cfg.spatial_dims))
        image = smooth + 0.1 * smooth.std() * rng.standard_normal(shape)
        source = f"seeded smooth random image, {' x '.join(map(str, shape[1:]))}, {cfg.in_channels} channel(s)"
    shape_c = (-1,) + (1,) * (image.ndim - 1)  # per-channel bounds along the channel axis (first here)
    low = np.reshape(ck.norm.low, shape_c) if ck.norm and ck.norm.channels else (ck.norm.low if ck.norm else 0.0)
    high = np.reshape(ck.norm.high, shape_c) if ck.norm and ck.norm.channels else (ck.norm.high if ck.norm else 1.0)
    p_lo, p_hi = np.percentile(image, [1, 99.8])
    image = low + (image - p_lo) / max(p_hi - p_lo, 1e-12) * (high - low)
    return image[None].astype(np.float32), source + ", rescaled to the training intensity range"


def crop_test_image(ck: Checkpoint, side: int, image: ImageData) -> tuple[np.ndarray, str]:
    """The centre ``side``-pixel crop of ``image`` along Y, X (and Z for 3D models) as a ``(1, C, [Z,] Y, X)`` float32
    test input in the image's own intensity units; the middle time point, and the middle Z slice for 2D models."""
    cfg = ck.config
    img = image.to_canonical()
    sizes = dict(zip(img.axes, img.shape, strict=True))
    channels = sizes.get("C", 1)
    if channels != cfg.in_channels:
        raise InputError(
            f"the test image has {channels} channel(s) (axes {image.axes}, shape {image.shape}) but the model takes "
            f"{cfg.in_channels}; choose an image with {cfg.in_channels} channel(s), or no test image to use a sample"
        )
    crop_axes = "ZYX"[3 - cfg.spatial_dims :]
    missing = [a for a in crop_axes if a not in sizes]
    small = [f"{a} {sizes[a]}" for a in crop_axes if a in sizes and sizes[a] < side]
    if missing or small:
        need = " x ".join([str(side)] * cfg.spatial_dims)
        what = f"has no {', '.join(missing)} axis" if missing else f"is too small ({', '.join(small)} pixels)"
        raise InputError(
            f"the test image (axes {image.axes}, shape {image.shape}) {what}: the {cfg.spatial_dims}D model's test "
            f"input is a centre crop of {need} {'voxels' if cfg.spatial_dims == 3 else 'pixels'}; choose a larger "
            "image, or no test image to use a sample"
        )
    index = tuple(
        slice(None) if a == "C" else slice((n - side) // 2, (n - side) // 2 + side) if a in crop_axes else n // 2
        for a, n in sizes.items()
    )
    crop = np.asarray(img.data[index], dtype=np.float32)
    if "C" not in sizes:
        crop = crop[None]
    if not np.isfinite(crop).all():
        raise InputError("the test image's centre crop holds NaN or infinite values; choose another image")
    shape = " x ".join([str(side)] * cfg.spatial_dims)
    return crop[None], f"centre {shape} crop of the image chosen at export, in its own intensity units"


def _display(a: np.ndarray) -> np.ndarray:
    """A 2D uint8 view: the middle slice of a volume, channel 0 (or RGB for 3 channels), percentile-stretched."""
    a = a[0]  # drop batch
    if a.ndim == 4:
        a = a[:, a.shape[1] // 2]
    a = np.moveaxis(a, 0, -1) if a.shape[0] == 3 else a[0]
    lo, hi = np.percentile(a, [1, 99.8])
    return (np.clip((a - lo) / max(hi - lo, 1e-12), 0, 1) * 255).astype(np.uint8)


def write_cover(inp: np.ndarray, out: np.ndarray, path: Path, height: int = 256) -> None:
    """``cover.png``: input (left) and restored output (right), each scaled to ``height`` pixels (2:1 aspect)."""
    tiles = []
    for a in (inp, out):
        img = Image.fromarray(_display(a)).convert("RGB")
        tiles.append(img.resize((height, height), Image.Resampling.NEAREST))
    cover = Image.new("RGB", (2 * height, height))
    cover.paste(tiles[0], (0, 0))
    cover.paste(tiles[1], (height, 0))
    cover.save(path, optimize=True)


def _block(value: Any) -> str:
    return "```json\n" + json.dumps(value, indent=2, default=str) + "\n```"


def write_readme(
    path: Path, *, ck: Checkpoint, name: str, side: int, facts: dict[str, str], details: dict[str, Any]
) -> None:
    """``README.md`` from the checkpoint's record, plus export ``facts`` (label -> text) and check ``details``.

    FLOPs are given for a ``side``-sided input.
    """
    summary = describe_checkpoint(ck, size=side)
    rec = ck.record
    keys = ("steps", "method", "mode", "seed", "completed", "source", "created", "versions")
    train = {k: rec[k] for k in keys if k in rec}
    metrics = rec.get("metrics") or {}
    metric_rows = "\n".join(
        f"| {k} | {v:.4g} |" if isinstance(v, int | float) else f"| {k} | {v} |" for k, v in metrics.items()
    )
    lines = [
        f"# {name}",
        "",
        f"A napari-skd {ck.role} network for image restoration (denoising), exported as a bioimage.io model.",
        "napari-skd trains a Restormer teacher, then distils small students from it with soft knowledge",
        "distillation (SKD).",
        "",
        "## Model",
        "",
        *(f"- **{k}**: {v}" for k, v in summary.items() if k not in ("metrics", "training")),
        f"- **checkpoint hash** (SHA-256 of architecture and weights): `{ck.hash}`",
        "",
        "## Training data",
        "",
        _block(rec["data"]) if rec.get("data") else "Not recorded in the checkpoint.",
        "",
        "## Training",
        "",
        _block(train) if train else "Not recorded in the checkpoint.",
        "",
        "The complete training record is attached as `training_record.json` and stored under `config.napari_skd`.",
        "",
        "## Metrics",
        "",
        f"| metric | value |\n|---|---|\n{metric_rows}" if metrics else "No validation metrics recorded.",
        "",
        "## Export",
        "",
        *(f"- **{k}**: {v}" for k, v in facts.items()),
        "",
        "## Validation",
        "",
        "At export, napari-skd compared the TorchScript (and ONNX) weights with the PyTorch model on the test input",
        "and on a second input size (largest absolute differences, in model units, below). It then validated the",
        "package with `bioimageio.spec` (format, files, hashes, test-tensor shapes) and reproduced the test output",
        "from the test input with the packaged weights and the declared pre/post-processing.",
        "",
        _block(details),
        "",
        "To validate on your own data, restore held-out noisy images that have clean references and compare (PSNR,",
        "SSIM), e.g. with `napari-skd bench` or `bioimageio.core`.",
        "",
        "## Citation",
        "",
        f"- {SKD_CITATION} https://doi.org/{SKD_DOI}",
        f"- {RESTORMER_CITATION} https://doi.org/{RESTORMER_DOI}",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
