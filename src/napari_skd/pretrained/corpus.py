"""The pretraining corpus: clean images (dead leaves and natural photographs) and a blind degradation stream.

A ``Corpus`` is a pool of clean square images, built from seeds (synthetic) and from the photographs that ship in
installed wheels (cut into crops; the last rows of each photograph are kept for validation). ``CorpusStream`` draws
training batches from it as the trainer's samplers do (``batch(step, n, rank)``): random crops, flips and rotations,
then a degradation drawn per patch, which the model is not told:

- Gaussian noise, sigma 0 to 0.25 of the range;
- Poisson-Gaussian noise, 1 to 100 photons at the top of the range (log-uniform), read noise 0 to 0.05;
- Rician noise (magnitude MR), sigma 0 to 0.15;
- in a tenth of the patches, a mild blur (sigma 0.3 to 1 pixel) before the noise.

Each pair is then normalised as a generalist sees a user's image: with the 1st and 99.8th percentiles of the noisy
input, so the model learns to take any image mapped by its own percentiles.
"""

from __future__ import annotations

import hashlib
import json
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..data.sampler import Batch
from .leaves import dead_leaves
from .natural import natural_images

#: Percentiles that map an input to model units (the same as a checkpoint's default normalisation).
PMIN, PMAX = 1.0, 99.8
#: Rows of each photograph kept out of training, for validation.
NATURAL_HELD_OUT = 0.15
#: Dead-leaves validation images come from this seed range, apart from training seeds.
VALIDATION_SEED = 10**6


@dataclass
class Corpus:
    """Clean training images (``images``: N x S x S float32 in [0, 1]) and validation images of both kinds."""

    images: np.ndarray
    val_synthetic: np.ndarray
    val_natural: np.ndarray
    manifest: dict = field(default_factory=dict)

    @property
    def manifest_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.manifest, sort_keys=True).encode()).hexdigest()


def _leaf(args: tuple[int, int, int]) -> np.ndarray:
    seed, index, size = args
    return dead_leaves(np.random.SeedSequence([seed, index]), size)


def build_corpus(
    n_synthetic: int, size: int = 256, seed: int = 0, natural_crops: int = 0, workers: int = 1, n_val: int = 32
) -> Corpus:
    """``n_synthetic`` dead-leaves images and ``natural_crops`` crops (at scales 1, 1/2 and 1/4) of the installed
    photographs' training rows, all ``size`` x ``size``; validation: ``n_val`` held-out dead-leaves images and crops
    of the photographs' held-out rows."""
    jobs = [(seed, i, size) for i in range(n_synthetic)]
    val_jobs = [(VALIDATION_SEED + seed, i, size) for i in range(n_val)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            leaves = list(pool.map(_leaf, jobs, chunksize=16))
            val_leaves = list(pool.map(_leaf, val_jobs, chunksize=4))
    else:
        leaves, val_leaves = [_leaf(j) for j in jobs], [_leaf(j) for j in val_jobs]
    photos, entries = natural_images()
    rng = np.random.default_rng([seed, 7])
    crops, val_crops = [], []
    for img in photos:
        cut = img.shape[0] - math.ceil(img.shape[0] * NATURAL_HELD_OUT)
        train, held = img[:cut], img[cut:]
        for _ in range(natural_crops // max(1, len(photos))):
            crops.append(_random_crop(train, size, rng))
        val_crops.append(_centre_crop(held, size))
    images = np.stack(leaves + crops).astype(np.float32)
    manifest = {
        "synthetic": {"generator": "napari_skd.pretrained.leaves.dead_leaves", "seed": seed, "count": n_synthetic,
                      "size": size, "validation_seed": VALIDATION_SEED + seed, "validation_count": n_val},
        "natural": entries,
        "natural_crops": len(crops),
        "natural_held_out_rows": NATURAL_HELD_OUT,
    }  # fmt: skip
    val_natural = np.stack(val_crops).astype(np.float32) if val_crops else np.zeros((0, size, size), np.float32)
    return Corpus(images, np.stack(val_leaves).astype(np.float32), val_natural, manifest)


def _random_crop(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A ``size`` crop at a random scale (1, 1/2 or 1/4: coarser structures), reflect-padded if too small."""
    factor = int(rng.choice([1, 2, 4], p=[0.5, 0.3, 0.2]))
    if min(img.shape) >= size * factor:
        y, x = (int(rng.integers(0, s - size * factor + 1)) for s in img.shape)
        region = img[y : y + size * factor, x : x + size * factor]
        return region.reshape(size, factor, size, factor).mean(axis=(1, 3))
    return _centre_crop(img, size)


def _centre_crop(img: np.ndarray, size: int) -> np.ndarray:
    pad = [(0, max(0, size - s)) for s in img.shape]
    img = np.pad(img, pad, mode="reflect") if any(p[1] for p in pad) else img
    y, x = ((s - size) // 2 for s in img.shape)
    return img[y : y + size, x : x + size]


# --- degradations (torch, per patch, blind) ----------------------------------------------------------------------


def degrade_blind(clean: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Degrade each item of ``clean`` (N, 1, Y, X) with its own randomly drawn noise model and level."""
    n, dev = clean.shape[0], clean.device

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return (lo + (hi - lo) * torch.rand(n, 1, 1, 1, generator=gen, device=dev)).to(clean.dtype)

    kind = torch.multinomial(torch.tensor([0.4, 0.4, 0.2], device=dev), n, replacement=True, generator=gen)
    kind = kind.view(n, 1, 1, 1)
    x = clean
    blur = torch.rand(n, generator=gen, device=dev) < 0.1
    if bool(blur.any()):
        x = torch.where(blur.view(n, 1, 1, 1), gaussian_blur(clean, uniform(0.3, 1.0)), clean)
    noise = torch.randn(x.shape, generator=gen, device=dev, dtype=x.dtype)
    gaussian = x + uniform(0.0, 0.25) * noise
    peak = torch.exp(uniform(0.0, math.log(100.0)))
    photons = torch.poisson(x.clamp_min(0) * peak, generator=gen) / peak
    poisson = photons + uniform(0.0, 0.05) * torch.randn(x.shape, generator=gen, device=dev, dtype=x.dtype)
    s = uniform(0.0, 0.15)
    imag = torch.randn(x.shape, generator=gen, device=dev, dtype=x.dtype)
    rician = torch.sqrt((x + s * noise) ** 2 + (s * imag) ** 2)
    return torch.where(kind == 0, gaussian, torch.where(kind == 1, poisson, rician))


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each item (N, 1, Y, X) with its own sigma (N, 1, 1, 1), separable, reflect padding."""
    radius = 3
    taps = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype).view(1, -1)
    kernel = torch.exp(-(taps**2) / (2 * sigma.view(-1, 1) ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (N, K)
    n = x.shape[0]
    y = F.pad(x.transpose(0, 1), (radius, radius, 0, 0), mode="reflect")  # (1, N, Y, X + 2r)
    y = F.conv2d(y, kernel.view(n, 1, 1, -1), groups=n)
    y = F.pad(y, (0, 0, radius, radius), mode="reflect")
    y = F.conv2d(y, kernel.view(n, 1, -1, 1), groups=n)
    return y.transpose(0, 1)


def normalise_pair(noisy: torch.Tensor, clean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Map both by the noisy item's own percentiles (as a generalist maps a user's image)."""
    flat = noisy.flatten(1).float()
    lo = torch.quantile(flat, PMIN / 100, dim=1).view(-1, 1, 1, 1)
    hi = torch.quantile(flat, PMAX / 100, dim=1).view(-1, 1, 1, 1)
    span = (hi - lo).clamp_min(1e-3)
    return (noisy - lo) / span, (clean - lo) / span


def draw_batch(images: torch.Tensor, patch: int, seed: int, step: int, n: int, rank: int = 0) -> Batch:
    """``n`` degraded and clean patch pairs from ``images`` (N, S, S): random crops, flips and 90-degree turns, a
    random contrast, a blind degradation each, per-input normalisation; a pure function of (seed, step, rank)."""
    device = images.device
    gen = torch.Generator(device).manual_seed(hash((seed, step, rank)) % 2**63)
    count, size = images.shape[0], images.shape[-1]
    idx = torch.randint(0, count, (n,), generator=gen, device=device).tolist()
    offsets = torch.randint(0, size - patch + 1, (n, 2), generator=gen, device=device).tolist()
    turns = torch.randint(0, 8, (n,), generator=gen, device=device).tolist()
    patches = []
    for i, (y, x), t in zip(idx, offsets, turns, strict=True):
        p = torch.rot90(images[i, y : y + patch, x : x + patch], t % 4)
        patches.append(p.flip(-1) if t >= 4 else p)
    clean = torch.stack(patches)[:, None]
    scale = 0.4 + 0.6 * torch.rand(n, 1, 1, 1, generator=gen, device=device)  # not always full range
    clean = clean * scale + 0.1 * torch.rand(n, 1, 1, 1, generator=gen, device=device)
    noisy, target = normalise_pair(degrade_blind(clean, gen), clean)
    return Batch(noisy.contiguous(), target.contiguous())


class CorpusStream:
    """Training batches from a ``Corpus`` on ``device`` (the trainer's sampler interface), and fixed validation
    batches of the held-out synthetic and natural images."""

    def __init__(self, corpus: Corpus, patch: int, device: torch.device, seed: int = 0, val_patches: int = 64):
        self.corpus, self.patch, self.device, self.seed = corpus, patch, device, seed
        self.images = torch.from_numpy(corpus.images).to(device)
        held_out = (("synthetic", corpus.val_synthetic), ("natural", corpus.val_natural))
        self.validation = {
            name: draw_batch(torch.from_numpy(imgs).to(device), patch, seed + 7919 + salt, 0, val_patches)
            for salt, (name, imgs) in enumerate(held_out)
            if len(imgs)
        }

    def batch(self, step: int, n: int, rank: int = 0) -> Batch:
        return draw_batch(self.images, self.patch, self.seed, step, n, rank)


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean PSNR over items, data range 1 (model units)."""
    mse = ((pred.float() - target.float()) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1 / mse)).mean())
