"""Seeded dead-leaves images: the synthetic half of the pretraining corpus.

A dead-leaves image is a stack of occluding shapes whose sizes follow a power law, the model of natural image
statistics of Lee, Mumford and Huang (IJCV 41, 2001). Training restoration networks on such images alone comes close
to training on natural photographs (Achddou et al., "Synthetic images as a regularity prior for image restoration
neural networks", SSVM 2021; "VibrantLeaves", arXiv 2504.10201), and they cost nothing to license or download.

Besides the classic layout (``natural``), two styles give the intensity statistics of our users' images:
``fluorescence`` (dark background, sparse bright objects with soft edges, speckled texture inside) and ``medical``
(a large body outline, smooth mid-grey regions with gradients, a dark outside). Every image is a pure function of its
seed.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.ndimage import gaussian_filter, zoom

Style = Literal["natural", "fluorescence", "medical"]
STYLES: tuple[Style, ...] = ("natural", "fluorescence", "medical")


def power_law_radii(rng: np.random.Generator, n: int, rmin: float, rmax: float, alpha: float = 3.0) -> np.ndarray:
    """``n`` radii with density proportional to ``r**-alpha`` on [rmin, rmax] (inverse-CDF sampling)."""
    u = rng.random(n)
    a = 1.0 - alpha
    return (rmin**a + u * (rmax**a - rmin**a)) ** (1.0 / a)


def _texture(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A zero-mean texture of unit-ish amplitude: a grating, smoothed noise or none."""
    kind = rng.integers(3)
    if kind == 0:
        return np.zeros(shape, np.float32)
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    if kind == 1:
        theta, period = rng.uniform(0, np.pi), rng.uniform(2.5, 24)
        return np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period + rng.uniform(0, 6.3))
    noise = gaussian_filter(rng.standard_normal(shape).astype(np.float32), rng.uniform(0.6, 3))
    return noise / (noise.std() + 1e-6)


def _shape_mask(rng: np.random.Generator, r: float, soft: float) -> np.ndarray:
    """A disk, ellipse or rotated rectangle of radius about ``r`` in its bounding box; edges ``soft`` pixels wide."""
    half = int(np.ceil(r * 1.5)) + 1
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    u = xx * np.cos(theta) + yy * np.sin(theta)
    v = -xx * np.sin(theta) + yy * np.cos(theta)
    aspect = rng.uniform(0.35, 1.0)
    kind = rng.integers(3)
    if kind == 0:  # disk
        dist = np.sqrt(u**2 + v**2) - r
    elif kind == 1:  # ellipse (approximate signed distance)
        dist = (np.sqrt(u**2 + (v / aspect) ** 2) - r) * np.sqrt(aspect)
    else:  # rectangle
        dist = np.maximum(np.abs(u) - r, np.abs(v) - r * aspect)
    return np.clip(0.5 - dist / max(soft, 1e-3), 0.0, 1.0)


def _paste(canvas: np.ndarray, mask: np.ndarray, fill: np.ndarray, cy: int, cx: int) -> None:
    """Paint ``fill`` through ``mask`` centred at (cy, cx), clipped to the canvas (over what is there)."""
    h = mask.shape[0] // 2
    y0, x0, y1, x1 = cy - h, cx - h, cy + h + 1, cx + h + 1
    sy0, sx0 = max(0, -y0), max(0, -x0)
    sy1 = mask.shape[0] - max(0, y1 - canvas.shape[0])
    sx1 = mask.shape[1] - max(0, x1 - canvas.shape[1])
    if sy1 <= sy0 or sx1 <= sx0:
        return
    region = canvas[max(0, y0) : min(canvas.shape[0], y1), max(0, x0) : min(canvas.shape[1], x1)]
    m = mask[sy0:sy1, sx0:sx1]
    region += m * (fill[sy0:sy1, sx0:sx1] - region)


def _fill(rng: np.random.Generator, size: int, value: float, texture: float, gradient: float) -> np.ndarray:
    """A shape's interior: a value plus a linear gradient and a texture."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / max(size, 1)
    g = gradient * ((xx - 0.5) * rng.standard_normal() + (yy - 0.5) * rng.standard_normal())
    return (value + g + texture * _texture(rng, (size, size))).astype(np.float32)


def dead_leaves(seed: int | np.random.SeedSequence, size: int = 256, style: Style | None = None) -> np.ndarray:
    """One ``size`` x ``size`` float32 image in [0, 1]; the style is drawn from the seed unless given."""
    rng = np.random.default_rng(seed)
    if style is None:
        style = STYLES[rng.choice(3, p=[0.5, 0.3, 0.2])]
    if style == "fluorescence":
        img = _fluorescence(rng, size)
    elif style == "medical":
        img = _medical(rng, size)
    else:
        img = _natural(rng, size)
    if rng.random() < 0.3:  # depth of field / optics
        img = gaussian_filter(img, rng.uniform(0.3, 1.5))
    if rng.random() < 0.25:  # structures larger than the pixel grid: render coarse, upsample smoothly
        factor = rng.choice([2, 3])
        small = img[:: int(factor), :: int(factor)]
        img = zoom(small, factor, order=3)[:size, :size]
    lo, hi = np.percentile(img, [0.1, 99.9])
    img = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)
    return (img ** rng.uniform(0.7, 1.5)).astype(np.float32)


def _natural(rng: np.random.Generator, size: int) -> np.ndarray:
    img = np.full((size, size), rng.random(), np.float32)
    n = int(rng.integers(300, 1200))
    radii = np.sort(power_law_radii(rng, n, 1.5, size / 2.5))[::-1]  # large leaves first, small ones on top
    for r in radii:
        box = int(np.ceil(r * 1.5)) * 2 + 3
        fill = _fill(rng, box, rng.random(), rng.uniform(0, 0.15) * (r > 4), rng.uniform(0, 0.4))
        _paste(img, _shape_mask(rng, r, rng.uniform(0.5, 1.5)), fill, *rng.integers(0, size, 2))
    return img


def _fluorescence(rng: np.random.Generator, size: int) -> np.ndarray:
    background = rng.uniform(0.0, 0.08)
    img = np.full((size, size), background, np.float32)
    img += 0.03 * gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), size / 16) * rng.random()
    n = int(rng.integers(8, 120))
    radii = power_law_radii(rng, n, 1.5, size / 6, alpha=2.5)
    for r in radii:
        box = int(np.ceil(r * 1.5)) * 2 + 3
        value = background + rng.uniform(0.15, 1.0) ** 2 * (1 - background)
        fill = _fill(rng, box, value, value * rng.uniform(0, 0.3), value * rng.uniform(0, 0.6))
        soft = rng.uniform(1.0, max(1.5, r / 2))  # soft edges: out of focus, diffraction
        _paste(img, _shape_mask(rng, r, soft), np.maximum(fill, background), *rng.integers(0, size, 2))
    if rng.random() < 0.5:  # filaments: thin bright lines
        for _ in range(int(rng.integers(1, 12))):
            _line(rng, img, size, rng.uniform(0.2, 0.9))
    return img


def _line(rng: np.random.Generator, img: np.ndarray, size: int, value: float) -> None:
    """A smooth random curve a pixel or two wide."""
    t = np.linspace(0, 1, 4 * size)
    p0, p1, p2 = rng.uniform(0, size, (3, 2))
    pts = (1 - t)[:, None] ** 2 * p0 + 2 * ((1 - t) * t)[:, None] * p1 + (t**2)[:, None] * p2
    ys, xs = np.clip(pts.astype(int).T, 0, size - 1)
    trace = np.zeros_like(img)
    trace[ys, xs] = value
    width = rng.uniform(0.5, 1.5)
    img += gaussian_filter(trace, width) * (2 * np.pi * width**2) ** 0.5


def _medical(rng: np.random.Generator, size: int) -> np.ndarray:
    img = np.zeros((size, size), np.float32)
    body = _shape_mask(rng, size * rng.uniform(0.3, 0.5), rng.uniform(1, 3))
    crop = np.zeros((size, size), np.float32)
    centre = (size // 2 + rng.integers(-size // 8, size // 8 + 1, 2)).tolist()
    _paste(crop, body, np.ones_like(body), *centre)
    tissue = np.full((size, size), rng.uniform(0.3, 0.6), np.float32)
    n = int(rng.integers(20, 200))
    for r in np.sort(power_law_radii(rng, n, 2, size / 4, alpha=2.5))[::-1]:
        box = int(np.ceil(r * 1.5)) * 2 + 3
        fill = _fill(rng, box, rng.uniform(0.15, 0.95), rng.uniform(0, 0.04), rng.uniform(0, 0.3))
        _paste(tissue, _shape_mask(rng, r, rng.uniform(0.7, 3)), fill, *rng.integers(0, size, 2))
    if rng.random() < 0.5:  # a bright rim (skull, bone cortex)
        rim = np.clip(crop - gaussian_filter(crop, rng.uniform(1.5, 4)) * 1.2, 0, 1)
        tissue = tissue + rim * rng.uniform(1, 3)
    img += crop * tissue
    return img
