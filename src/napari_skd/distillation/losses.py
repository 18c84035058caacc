"""Soft knowledge distillation losses (Zhang & Yan, arXiv:2501.09321) and the baselines they are compared with.

Features are read as C x N matrices (N = spatial positions) per batch item:

- channel cross-net attention   S_fc = softmax(T_f S_f^T / lambda) S_f          (C x C map, softmax over rows)
- spatial cross-net attention   S_ft = S_f softmax(T_f^T S_f / lambda)          (N x N map, softmax over columns)
- Gaussian kernel distance      GK(x, y) = mean_n [1 - exp(-d_n(x, y) / (2 sigma^2))],  d_n = squared distance at n
- L_GK = sum over levels [GK(S_f, T_f) + alpha1 (GK(S_fc, T_fc) + GK(S_ft, T_ft))]
- contrastive (image level)     L_CL = sum_i w_i d_i(a, p) / (mean_k d_i(a, n_k) + eps),  d_i = L1 in teacher level i
- L = L_REC + alpha2 L_GK + alpha3 L_CL,  L_REC = |G - S_r|_1 + beta |T_r - S_r|_1

Where the paper is silent we chose (docs/method.md gives the evidence):

- features are scaled to unit root-mean-square per item and level before any comparison, so a term measures shape,
  not the width or scale of a network;
- the attention logits are cosine similarities divided by the temperature lambda (0.1), so the maps are sharp
  whatever the feature scale (with raw dot products over sqrt(N) they were uniform);
- an MCA readout is compared with the teacher's own readout T_fc = softmax(T T^T / lambda) T (T_ft likewise), so the
  MCA terms are exactly 0 when the student's features equal the teacher's and positive otherwise;
- the kernel acts per position: d_n is the mean squared difference over channels at position n, and sigma, when not
  given, is set from the data: 2 sigma^2 = the median of d_n over the batch (the median heuristic, Gretton et al.
  2012), so positions far off the teacher weigh less than in plain L2;
- the spatial term runs on features average-pooled to at most ``max_positions`` positions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-6


def as_matrix(f: torch.Tensor) -> torch.Tensor:
    """(B, C, *spatial) -> (B, C, N)."""
    return f.reshape(f.shape[0], f.shape[1], -1)


def unit_rms(m: torch.Tensor) -> torch.Tensor:
    """Scale each item of a (B, C, N) matrix to unit root-mean-square."""
    return m / m.pow(2).mean(dim=(1, 2), keepdim=True).add(EPS).sqrt()


def channel_cross_attention(t: torch.Tensor, s: torch.Tensor, lam: float = 0.1) -> torch.Tensor:
    """S_fc = softmax(cos(T, S) / lambda) S for (B, C, N) teacher ``t`` and student ``s`` (rows compared)."""
    logits = F.normalize(t, dim=2) @ F.normalize(s, dim=2).transpose(1, 2) / lam  # (B, C, C)
    return torch.softmax(logits, dim=-1) @ s


def spatial_cross_attention(t: torch.Tensor, s: torch.Tensor, lam: float = 0.1) -> torch.Tensor:
    """S_ft = S softmax(cos(T, S) / lambda) for (B, C, N) teacher ``t`` and student ``s`` (columns compared)."""
    logits = F.normalize(t, dim=1).transpose(1, 2) @ F.normalize(s, dim=1) / lam  # (B, N, N)
    return s @ torch.softmax(logits, dim=1)  # each output position: a convex combination of student positions


def gaussian_kernel_distance(x: torch.Tensor, y: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """GK(x, y) = mean over positions of 1 - exp(-d_n / (2 sigma^2)) for (B, C, N) matrices; in [0, 1).

    ``d_n`` is the mean squared difference over channels at position n. ``sigma=None`` sets 2 sigma^2 to the median
    of d_n (detached), so the kernel works in its sensitive range at any feature scale.
    """
    d = (x - y).pow(2).mean(dim=1)  # (B, N)
    two_s2 = d.detach().median().clamp_min(EPS) if sigma is None else torch.tensor(2 * sigma**2, device=d.device)
    return (1 - torch.exp(-d / two_s2)).mean()


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
    sigma: float | None = None,
    alpha1: float = 1.0,
    lam: float = 0.1,
    max_positions: int = 256,
    use_mca: bool = True,
) -> dict[str, torch.Tensor]:
    """GK terms of one level: ``gk`` = GK(S_f, T_f) and, with MCA, ``gk_fc`` and ``gk_ft``; ``total`` combines them."""
    t, s = unit_rms(as_matrix(t_feat)), unit_rms(as_matrix(s_feat))
    out = {"gk": gaussian_kernel_distance(s, t, sigma)}
    total = out["gk"]
    if use_mca:
        out["gk_fc"] = gaussian_kernel_distance(
            channel_cross_attention(t, s, lam), channel_cross_attention(t, t, lam), sigma
        )
        tp = unit_rms(as_matrix(pool_positions(t_feat, max_positions)))
        sp = unit_rms(as_matrix(pool_positions(s_feat, max_positions)))
        out["gk_ft"] = gaussian_kernel_distance(
            spatial_cross_attention(tp, sp, lam), spatial_cross_attention(tp, tp, lam), sigma
        )
        total = total + alpha1 * (out["gk_fc"] + out["gk_ft"])
    out["total"] = total
    return out


def contrastive_ratio(
    anchor: list[torch.Tensor],
    positive: list[torch.Tensor],
    negatives: list[list[torch.Tensor]],
    weights: list[float],
    eps: float = 1e-7,
) -> torch.Tensor:
    """sum_i w_i |a_i - p_i|_1 / (mean_k |a_i - n_k,i|_1 + eps) over feature levels i, in fp32 (means over
    elements). ``negatives`` holds one list of level features per negative."""
    total = anchor[0].new_zeros((), dtype=torch.float32)
    for i, (a, p, w) in enumerate(zip(anchor, positive, weights, strict=True)):
        a = a.float()
        pull = (a - p.float()).abs().mean()
        push = torch.stack([(a - neg[i].float()).abs().mean() for neg in negatives]).mean()
        total = total + w * pull / (push + eps)
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
