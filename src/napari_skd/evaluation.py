"""Quality on a held-out region: a fixed, seeded degradation of clean data and PSNR/SSIM in normalised units."""

from __future__ import annotations

import math

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn

from .data.degrade import DegradationConfig, degrade
from .normalize import Normalization


def heldout_pair(
    clean: np.ndarray, norm: Normalization, degradation: DegradationConfig, fraction: float = 0.25, seed: int = 1234
) -> tuple[np.ndarray, np.ndarray]:
    """(clean, degraded) of the last ``fraction`` of a 2D image's rows, in normalised units (the region that
    ``val_fraction`` holds out of training)."""
    rows = math.ceil(clean.shape[0] * fraction)
    ref = norm.apply(clean[-rows:].astype(np.float32)).astype(np.float32)
    return ref, degrade(ref, degradation, np.random.default_rng(seed))


def psnr_ssim(ref: np.ndarray, out: np.ndarray) -> tuple[float, float]:
    """PSNR (dB) and SSIM with data range 1 (the normalisation's percentile range)."""
    psnr = peak_signal_noise_ratio(ref, out, data_range=1.0)
    return float(psnr), float(structural_similarity(ref, out, data_range=1.0))


def restore_whole(model: nn.Module, image: np.ndarray) -> np.ndarray:
    """Run a 1-channel 2D model on a whole normalised image at once."""
    with torch.inference_mode():
        return model.eval()(torch.from_numpy(np.ascontiguousarray(image))[None, None]).float().numpy()[0, 0]
