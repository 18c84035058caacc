"""Per-step losses: supervised and Noise2Void teacher training, and every distillation method."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.sampler import Batch, PatchSampler
from ..device import to_device
from ..models import FEATURE_LEVELS
from .config import LossConfig
from .losses import Projections, contrastive_ratio, mca_gk_loss


@dataclass(frozen=True)
class Terms:
    """The loss terms one distillation method uses; the objective runs only what these need."""

    target: Literal["clean", "teacher"]  # what L_REC compares the student with (clean falls back to the teacher)
    features: Literal["none", "l2", "gk"] = "none"  # feature term: none, FitNet L2, or Gaussian kernel (+ MCA)
    mca: bool = False  # MCA terms inside L_GK
    contrastive: bool = False  # image-level contrastive loss L_CL

    @property
    def teacher_features(self) -> bool:
        return self.features != "none" or self.contrastive


#: Which terms each method uses (``scratch`` never runs the teacher when clean targets exist).
METHOD_TERMS: dict[str, Terms] = {
    "scratch": Terms("clean"),
    "output-kd": Terms("teacher"),
    "feature-kd": Terms("clean", features="l2"),
    "skd": Terms("clean", features="gk", mca=True, contrastive=True),
    "skd-no-mca": Terms("clean", features="gk", contrastive=True),
    "skd-no-cl": Terms("clean", features="gk", mca=True),
}


def blind_spot(x: torch.Tensor, fraction: float, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise2Void masking (Krull et al., CVPR 2019): replace a random ``fraction`` of pixels by a random neighbour
    within a radius of 2 (never itself). Returns the masked input and the boolean mask."""
    spatial = x.shape[2:]
    n = x.numel() // x.shape[1]  # positions over batch and space
    count = max(1, int(round(n * fraction)))
    flat = rng.choice(n, size=count, replace=False)
    coords = np.stack(np.unravel_index(flat, (x.shape[0], *spatial)))  # (1 + d, count)
    offsets = rng.integers(-2, 3, size=(len(spatial), count))
    zero = (offsets == 0).all(axis=0)
    offsets[-1, zero] = rng.choice([-2, -1, 1, 2], size=int(zero.sum()))
    src = coords.copy()
    for d, size in enumerate(spatial):
        src[1 + d] = np.clip(coords[1 + d] + offsets[d], 0, size - 1)
        src[1 + d] = np.where(src[1 + d] == coords[1 + d], np.clip(coords[1 + d] - offsets[d], 0, size - 1), src[1 + d])
    masked = x.clone()
    dst_idx = tuple(torch.from_numpy(c) for c in coords)
    src_idx = tuple(torch.from_numpy(c) for c in src)
    for c in range(x.shape[1]):
        masked[(dst_idx[0], c, *dst_idx[1:])] = x[(src_idx[0], c, *src_idx[1:])]
    mask = torch.zeros((x.shape[0], *spatial), dtype=torch.bool)
    mask[dst_idx] = True
    return masked, mask.unsqueeze(1).expand_as(x)


class TeacherObjective:
    """L1 to clean targets (supervised) or masked MSE to the noisy pixels themselves (Noise2Void)."""

    def __init__(
        self,
        sampler: PatchSampler,
        batch_size: int,
        device: torch.device,
        self_supervised: bool,
        fraction: float,
        seed: int,
        rank: int = 0,
    ):
        self.sampler, self.batch_size, self.device = sampler, batch_size, device
        self.self_supervised, self.fraction, self.seed, self.rank = self_supervised, fraction, seed, rank

    def __call__(self, model: nn.Module, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        batch = self.sampler.batch(step, self.batch_size, self.rank)
        x = batch.input
        if not self.self_supervised:
            loss = F.l1_loss(model(to_device(x, self.device)), to_device(batch.target, self.device))
            return loss, {"l1": float(loss.detach())}
        rng = np.random.default_rng([self.seed, step, self.rank, 7])
        masked, mask = blind_spot(x, self.fraction, rng)
        out = model(to_device(masked, self.device))
        mask = mask.to(self.device)
        loss = F.mse_loss(out[mask], x.to(self.device)[mask])
        return loss, {"n2v_mse": float(loss.detach())}


class StudentWithProjections(nn.Module):
    """The trainable part of distillation: the student plus the 1x1 projections of its distilled levels.

    ``forward(x)`` returns the student output and its projected features (none for output-only methods).
    """

    def __init__(self, student: nn.Module, teacher_channels: tuple[int, ...], levels: tuple[str, ...], method: str):
        super().__init__()
        self.student = student
        uses_features = METHOD_TERMS[method].features != "none"
        self.level_idx = [FEATURE_LEVELS.index(lv) for lv in levels] if uses_features else []
        s_ch = [student.config.feature_channels[i] for i in self.level_idx]
        t_ch = [teacher_channels[i] for i in self.level_idx]
        self.projections = Projections(s_ch, t_ch, student.config.spatial_dims)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if not self.level_idx:
            return self.student(x), []
        out, feats = self.student(x, return_features=True)
        return out, self.projections([feats[i] for i in self.level_idx])


class DistillObjective:
    """``L = L_REC + alpha2 L_GK + alpha3 L_CL`` (skd) and the baselines, on one batch."""

    def __init__(
        self,
        teacher: nn.Module,
        cfg: LossConfig,
        sampler: PatchSampler,
        batch_size: int,
        device: torch.device,
        rank: int = 0,
    ):
        self.teacher, self.cfg, self.sampler = teacher, cfg, sampler
        self.batch_size, self.device, self.rank = batch_size, device, rank
        self.level_idx = [FEATURE_LEVELS.index(lv) for lv in cfg.levels]

    def losses(self, module: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        cfg, terms = self.cfg, METHOD_TERMS[self.cfg.method]
        x = to_device(batch.input, self.device)
        gt = to_device(batch.target, self.device) if batch.target is not None else None
        t_out, t_feats = None, []
        if terms.teacher_features:
            with torch.no_grad():
                t_out, t_feats = self.teacher(x, return_features=True)
        elif terms.target == "teacher" or gt is None:
            with torch.no_grad():
                t_out = self.teacher(x)
        s_out, s_feats = module(x)
        rec = F.l1_loss(s_out, t_out if terms.target == "teacher" or gt is None else gt)
        total, parts = rec, {"rec": float(rec.detach())}
        t_sel = [t_feats[i] for i in self.level_idx] if terms.features != "none" else []
        if terms.features == "l2":
            fkd = sum(F.mse_loss(s, t) for s, t in zip(s_feats, t_sel, strict=True)) / len(t_sel)
            total = total + cfg.feature_kd_weight * fkd
            parts["feature_l2"] = float(fkd.detach())
        elif terms.features == "gk":
            gk = x.new_zeros(())
            for s, t in zip(s_feats, t_sel, strict=True):
                gk = gk + mca_gk_loss(t, s, sigma=cfg.sigma, alpha1=cfg.alpha1, lam=cfg.mca_lambda,
                                      max_positions=cfg.max_positions, use_mca=terms.mca)["total"]  # fmt: skip
            total = total + cfg.alpha2 * gk
            parts["gk"] = float(gk.detach())
        if terms.contrastive:
            cl = self.contrastive(s_out, t_out, gt, x, t_feats)
            total = total + cfg.alpha3 * cl
            parts["cl"] = float(cl.detach())
        return total, parts

    def contrastive(self, s_out, t_out, gt, x, t_feats) -> torch.Tensor:
        """Anchor: student output; positives: teacher output (and ground truth); negative: the degraded input.
        Distances are L1 in the frozen teacher's first encoder levels."""
        n = self.cfg.cl_levels
        w = list(self.cfg.cl_weights[:n])
        anchor = self.teacher.encode(s_out, n)  # gradients flow to the student through the frozen teacher
        with torch.no_grad():
            negative = t_feats[:n]
            positives = [self.teacher.encode(t_out, n)]
            if gt is not None:
                positives.append(self.teacher.encode(gt, n))
        return sum(contrastive_ratio(anchor, p, negative, w) for p in positives) / len(positives)

    def __call__(self, module: nn.Module, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        return self.losses(module, self.sampler.batch(step, self.batch_size, self.rank))
