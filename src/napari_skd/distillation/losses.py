"""Soft knowledge distillation losses (Zhang & Yan, arXiv:2501.09321) and the baselines they are compared with.

Features are read as C x N matrices (N = spatial positions) per batch item:

- channel cross-net attention   S_fc = softmax(T_f S_f^T / lambda) S_f          (C x C map, softmax over rows)
- spatial cross-net attention   S_ft = S_f softmax(T_f^T S_f / lambda)          (N x N map, softmax over columns)
- Gaussian kernel distance      GK(x, y) = 1 - exp(-d(x, y) / (2 sigma^2)),  d = mean squared difference
- L_GK = sum over levels [GK(S_f, T_f) + alpha1 (GK(S_fc, T_f) + GK(S_ft, T_f))]
- contrastive (image level)     L_CL = sum_i w_i d_i(a, p) / (d_i(a, n) + eps),  d_i = L1 in teacher encoder level i
- L = L_REC + alpha2 L_GK + alpha3 L_CL,  L_REC = |G - S_r|_1

Where the paper is silent we chose: lambda defaults to sqrt of the summed dimension (scaled dot product); the spatial
softmax normalises over student positions, so each output position is a convex combination of student positions (as
each output channel is a convex combination of student channels in the channel term); the spatial term runs on
features average-pooled to at most ``max_positions`` positions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def as_matrix(f: torch.Tensor) -> torch.Tensor:
    """(B, C, *spatial) -> (B, C, N)."""
    return f.reshape(f.shape[0], f.shape[1], -1)


def channel_cross_attention(t: torch.Tensor, s: torch.Tensor, lam: float | None = None) -> torch.Tensor:
    """S_fc = softmax(T S^T / lambda) S for (B, C, N) teacher ``t`` and student ``s``."""
    lam = math.sqrt(t.shape[-1]) if lam is None else lam
    attn = torch.softmax(t @ s.transpose(1, 2) / lam, dim=-1)  # (B, C, C)
    return attn @ s


def spatial_cross_attention(t: torch.Tensor, s: torch.Tensor, lam: float | None = None) -> torch.Tensor:
    """S_ft = S softmax(T^T S / lambda) for (B, C, N) teacher ``t`` and student ``s``."""
    lam = math.sqrt(t.shape[1]) if lam is None else lam
    attn = torch.softmax(t.transpose(1, 2) @ s / lam, dim=1)  # (B, N, N), columns sum to 1
    return s @ attn


def gaussian_kernel_distance(x: torch.Tensor, y: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """GK(x, y) = 1 - exp(-d / (2 sigma^2)) with d the mean squared difference per element; in [0, 1)."""
    d = (x - y).pow(2).mean()
    return 1 - torch.exp(-d / (2 * sigma**2))


def pool_positions(f: torch.Tensor, max_positions: int) -> torch.Tensor:
    """Average-pool the spatial axes so that at most ``max_positions`` positions remain (aspect kept)."""
    spatial = f.shape[2:]
    n = math.prod(spatial)
    if n <= max_positions:
        return f
    factor = (n / max_positions) ** (1 / len(spatial))
    size = [max(1, int(s / factor)) for s in spatial]
    while math.prod(size) > max_positions:  # guard rounding
        i = size.index(max(size))
        size[i] -= 1
    pool = F.adaptive_avg_pool2d if len(spatial) == 2 else F.adaptive_avg_pool3d
    return pool(f, size)


def mca_gk_loss(
    t_feat: torch.Tensor,
    s_feat: torch.Tensor,
    *,
    sigma: float = 1.0,
    alpha1: float = 1.0,
    lam: float | None = None,
    max_positions: int = 1024,
    use_mca: bool = True,
) -> dict[str, torch.Tensor]:
    """GK terms of one level: ``gk`` = GK(S_f, T_f) and, with MCA, ``gk_fc`` and ``gk_ft``; ``total`` combines them."""
    t, s = as_matrix(t_feat), as_matrix(s_feat)
    out = {"gk": gaussian_kernel_distance(s, t, sigma)}
    total = out["gk"]
    if use_mca:
        out["gk_fc"] = gaussian_kernel_distance(channel_cross_attention(t, s, lam), t, sigma)
        tp = as_matrix(pool_positions(t_feat, max_positions))
        sp = as_matrix(pool_positions(s_feat, max_positions))
        out["gk_ft"] = gaussian_kernel_distance(spatial_cross_attention(tp, sp, lam), tp, sigma)
        total = total + alpha1 * (out["gk_fc"] + out["gk_ft"])
    out["total"] = total
    return out


def contrastive_ratio(
    anchor: list[torch.Tensor],
    positive: list[torch.Tensor],
    negative: list[torch.Tensor],
    weights: list[float],
    eps: float = 1e-7,
) -> torch.Tensor:
    """sum_i w_i |a_i - p_i|_1 / (|a_i - n_i|_1 + eps) over feature levels i (means over elements)."""
    total = anchor[0].new_zeros(())
    for a, p, n, w in zip(anchor, positive, negative, weights, strict=True):
        total = total + w * (a - p).abs().mean() / ((a - n).abs().mean() + eps)
    return total


class Projections(nn.Module):
    """Learned 1x1 convolutions mapping student feature widths to teacher widths, one per distilled level."""

    def __init__(self, student_channels: list[int], teacher_channels: list[int], spatial_dims: int):
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        self.maps = nn.ModuleList(
            nn.Identity() if cs == ct else conv(cs, ct, kernel_size=1, bias=False)
            for cs, ct in zip(student_channels, teacher_channels, strict=True)
        )

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [m(f) for m, f in zip(self.maps, feats, strict=True)]
