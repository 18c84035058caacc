"""Seeded synthetic degradations of clean images, in normalised intensity units."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class DegradationConfig(BaseModel):
    """A synthetic degradation: ``gaussian`` (sigma), ``poisson_gaussian`` (peak photons at intensity 1, plus
    read noise sigma; microscopy), ``rician`` (sigma; magnitude MR), ``blur_noise`` (Gaussian blur of ``blur_sigma``
    pixels, then Gaussian noise sigma)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["gaussian", "poisson_gaussian", "rician", "blur_noise"] = "gaussian"
    sigma: float = Field(0.1, ge=0, description="Gaussian noise standard deviation, in normalised units.")
    peak: float = Field(30.0, gt=0, description="Photons at normalised intensity 1 (poisson_gaussian).")
    blur_sigma: float = Field(1.0, ge=0, description="Blur standard deviation in pixels (blur_noise).")


def degrade(clean: np.ndarray, cfg: DegradationConfig, rng: np.random.Generator, spatial_axes: int = 2) -> np.ndarray:
    """Degrade a float32 array; the last ``spatial_axes`` axes are spatial (blur acts only on those)."""
    x = clean.astype(np.float32, copy=False)
    if cfg.kind == "gaussian":
        return x + rng.normal(0, cfg.sigma, x.shape).astype(np.float32)
    if cfg.kind == "poisson_gaussian":
        photons = rng.poisson(np.clip(x, 0, None) * cfg.peak).astype(np.float32) / cfg.peak
        return photons + rng.normal(0, cfg.sigma, x.shape).astype(np.float32)
    if cfg.kind == "rician":
        re = x + rng.normal(0, cfg.sigma, x.shape)
        im = rng.normal(0, cfg.sigma, x.shape)
        return np.sqrt(re**2 + im**2).astype(np.float32)
    from scipy.ndimage import gaussian_filter  # 0.3 s to import, and only blur_noise needs it

    sigma = [0.0] * (x.ndim - spatial_axes) + [cfg.blur_sigma] * spatial_axes
    blurred = gaussian_filter(x, sigma, mode="reflect")
    return (blurred + rng.normal(0, cfg.sigma, x.shape)).astype(np.float32)
