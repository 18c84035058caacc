"""Per-step losses: supervised and Noise2Void teacher training, and every distillation method."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist
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
    teacher_rec: bool = False  # L_REC adds beta L1(student, teacher) to the clean term
    features: Literal["none", "l2", "gk"] = "none"  # feature term: none, FitNet L2, or Gaussian kernel (+ MCA)
    mca: bool = False  # MCA terms inside L_GK
    contrastive: bool = False  # image-level contrastive loss L_CL

    @property
    def teacher_features(self) -> bool:
        return self.features != "none" or self.contrastive

    @property
    def uses_teacher(self) -> bool:
        """False for a student trained alone on clean targets."""
        return self.target == "teacher" or self.teacher_rec or self.teacher_features


#: Which terms each method uses (``scratch`` never runs the teacher when clean targets exist).
METHOD_TERMS: dict[str, Terms] = {
    "scratch": Terms("clean"),
    "output-kd": Terms("teacher"),
    "feature-kd": Terms("clean", features="l2"),
    "skd": Terms("clean", teacher_rec=True, features="gk", mca=True, contrastive=True),
    "skd-no-mca": Terms("clean", teacher_rec=True, features="gk", contrastive=True),
    "skd-no-cl": Terms("clean", teacher_rec=True, features="gk", mca=True),
    "skd-rec": Terms("clean", teacher_rec=True),
}


def needs_teacher_features(cfg: LossConfig) -> bool:
    """Whether ``cfg``'s method reads the teacher's features (a term with a zero weight is not computed)."""
    t = METHOD_TERMS[cfg.method]
    return t.features == "l2" or (t.features == "gk" and cfg.alpha2 > 0) or (t.contrastive and cfg.alpha3 > 0)


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

    def validation_loss(self, model: nn.Module) -> dict[str, float]:
        """Noise2Void's loss on the held-out patches with a fixed mask (``n2v_mse``), the figure to judge a
        self-supervised teacher by and to see when it stops improving; empty for supervised training."""
        val = self.sampler.validation
        if not self.self_supervised or val is None:
            return {}
        masked, mask = blind_spot(val.input, self.fraction, np.random.default_rng([self.seed, 2**31 - 1]))
        model.eval()
        with torch.no_grad():
            out = model(to_device(masked, self.device)).float()
        model.train()
        return {
            "n2v_mse": float(F.mse_loss(out[mask.to(self.device)], val.input.to(self.device)[mask.to(self.device)]))
        }


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
    """``L = L_REC + alpha2 L_GK + alpha3 L_CL`` (skd) and the baselines, on one batch.

    ``L_REC = |G - S_r|_1 + beta |T_r - S_r|_1`` with clean targets G; items without a clean target (noisy-only data,
    ``data.unlabelled``) learn ``|T_r - S_r|_1`` alone. With ``balance``, ``alpha2`` and ``alpha3`` are read as
    gradient-norm ratios to L_REC and converted into weights at the first step that uses each term.
    """

    def __init__(
        self,
        teacher: nn.Module,
        cfg: LossConfig,
        sampler: PatchSampler,
        batch_size: int,
        device: torch.device,
        rank: int = 0,
        unlabelled: PatchSampler | None = None,
        unlabelled_share: float = 0.5,
    ):
        self.teacher, self.cfg, self.sampler, self.unlabelled = teacher, cfg, sampler, unlabelled
        self.batch_size, self.device, self.rank = batch_size, device, rank
        self.n_unlabelled = (
            0 if unlabelled is None else max(1, min(batch_size - 1, round(batch_size * unlabelled_share)))
        )
        if unlabelled is not None and batch_size == 1:
            self.n_unlabelled = 0  # one item per step: alternate instead (see ``batch``)
        self.level_idx = [FEATURE_LEVELS.index(lv) for lv in cfg.levels]
        self.terms = METHOD_TERMS[cfg.method]
        self.weights: dict[str, float] = {}  # alpha2 / alpha3 as used (set at their first step when balancing)

    # --- data -------------------------------------------------------------------------------------------------------
    def batch(self, step: int) -> Batch:
        """The step's batch: labelled items, then ``n_unlabelled`` teacher-labelled items (target rows are NaN)."""
        if self.unlabelled is None:
            return self.sampler.batch(step, self.batch_size, self.rank)
        if self.n_unlabelled == 0:  # batch size 1: every other step draws from the unlabelled data
            src = self.unlabelled if step % 2 else self.sampler
            b = src.batch(step, 1, self.rank)
            if src is self.sampler or self.sampler.clean is None:
                return b
            return Batch(b.input, torch.full_like(b.input, float("nan")), b.teacher)
        lab = self.sampler.batch(step, self.batch_size - self.n_unlabelled, self.rank)
        unl = self.unlabelled.batch(step, self.n_unlabelled, self.rank)
        target = None
        if lab.target is not None:
            target = torch.cat([lab.target, torch.full_like(unl.input, float("nan"))])
        teacher = None
        if lab.teacher is not None and unl.teacher is not None:
            teacher = torch.cat([lab.teacher, unl.teacher])
        return Batch(torch.cat([lab.input, unl.input]), target, teacher)

    # --- terms ------------------------------------------------------------------------------------------------------
    def term_values(self, module: nn.Module, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        """The unweighted terms this method uses at ``step``: ``rec`` and any of ``feature_l2``, ``gk``, ``cl``."""
        cfg, terms = self.cfg, self.terms
        x = to_device(batch.input, self.device)
        gt = to_device(batch.target, self.device) if batch.target is not None else None
        t_out, t_feats = None, []
        if self.needs_teacher_features():
            with torch.no_grad():
                t_out, t_feats = self.teacher(x, return_features=True)
        elif batch.teacher is not None:  # labelled ahead (fixed training data): no teacher pass per step
            t_out = to_device(batch.teacher, self.device)
        elif terms.target == "teacher" or terms.teacher_rec or gt is None or gt.isnan().any():
            with torch.no_grad():
                t_out = self.teacher(x)
        s_out, s_feats = module(x)
        out = {"rec": self.reconstruction(s_out, t_out, gt)}
        t_sel = [t_feats[i] for i in self.level_idx] if t_feats and terms.features != "none" else []
        if terms.features == "l2":
            out["feature_l2"] = sum(F.mse_loss(s, t) for s, t in zip(s_feats, t_sel, strict=True)) / len(t_sel)
        elif terms.features == "gk" and cfg.alpha2 > 0:
            out["gk"] = sum(
                mca_gk_loss(t, s, sigma=cfg.sigma, alpha1=cfg.alpha1, lam=cfg.mca_lambda,
                            max_positions=cfg.max_positions, use_mca=terms.mca)["total"]
                for s, t in zip(s_feats, t_sel, strict=True)
            )  # fmt: skip
        if terms.contrastive and cfg.alpha3 > 0 and step >= cfg.cl_warmup:
            out["cl"] = self.contrastive(s_out, t_out, gt, x, t_feats)
        return out

    def needs_teacher_features(self) -> bool:
        """Whether a step runs the teacher for its features (a term with a zero weight is not computed)."""
        return needs_teacher_features(self.cfg)

    def reconstruction(self, s_out: torch.Tensor, t_out: torch.Tensor | None, gt: torch.Tensor | None) -> torch.Tensor:
        """L_REC: L1 to the clean target plus beta L1 to the teacher; the teacher alone where no clean target exists."""
        if self.terms.target == "teacher" or gt is None:
            return F.l1_loss(s_out, t_out)
        known = ~gt.isnan()
        target = torch.where(known, gt, t_out) if t_out is not None else gt
        rec = F.l1_loss(s_out, target)
        if self.terms.teacher_rec and self.cfg.beta > 0 and bool(known.any()):
            rec = rec + self.cfg.beta * F.l1_loss(s_out[known], t_out[known])
        return rec

    def contrastive(self, s_out, t_out, gt, x, t_feats) -> torch.Tensor:
        """Anchor: the student output; positive: the clean target (the teacher output where there is none);
        negatives: the degraded input and the positives of the other items in the batch. Distances are L1 in the
        frozen teacher's first encoder levels; gradients reach the student through the frozen encoder only."""
        n = self.cfg.cl_levels
        w = list(self.cfg.cl_weights[:n])
        with torch.autocast(self.device.type, enabled=False):
            anchor = self.teacher.encode(s_out.float(), n)
            with torch.no_grad():
                positive = t_out if gt is None else torch.where(gt.isnan(), t_out, gt)
                pos = self.teacher.encode(positive.float(), n)
                negatives = [[f.float() for f in t_feats[:n]]]
                if x.shape[0] > 1:
                    negatives.append([f.roll(1, dims=0) for f in pos])
            return contrastive_ratio(anchor, pos, negatives, w)

    # --- weights ----------------------------------------------------------------------------------------------------
    def weighted(
        self, module: nn.Module, values: dict[str, torch.Tensor], training: bool = True
    ) -> dict[str, torch.Tensor]:
        """Each term times its weight; with ``balance``, a term's weight is fixed from gradient norms on its first
        training step (``training=False``, as in diagnostics on rank 0 alone, computes it without keeping it)."""
        cfg = self.cfg
        out = {"rec": values["rec"]}
        if "feature_l2" in values:
            out["feature_l2"] = cfg.feature_kd_weight * values["feature_l2"]
        for name, ratio in (("gk", cfg.alpha2), ("cl", cfg.alpha3)):
            if name not in values:
                continue
            weight = self.weights.get(name)
            if weight is None:
                weight = self._balance(module, values["rec"], values[name], ratio, training) if cfg.balance else ratio
                if training:
                    self.weights[name] = weight
            out[name] = weight * values[name]
        return out

    def _balance(self, module: nn.Module, rec: torch.Tensor, term: torch.Tensor, ratio: float, reduce: bool) -> float:
        params = student_parameters(module)
        g_rec = _flat_grad(rec, params)
        g_term = _flat_grad(term, params)
        weight = torch.tensor(ratio * float(g_rec.norm()) / max(float(g_term.norm()), 1e-12))
        if reduce and dist.is_initialized():  # every rank uses the same weight
            weight = weight.to(self.device)
            dist.all_reduce(weight)
            weight = weight / dist.get_world_size()
        return float(weight)

    def state_dict(self) -> dict[str, float]:
        return dict(self.weights)

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.weights = dict(state)

    # --- entry points -----------------------------------------------------------------------------------------------
    def losses(self, module: nn.Module, batch: Batch, step: int = 0) -> tuple[torch.Tensor, dict[str, float]]:
        weighted = self.weighted(module, self.term_values(module, batch, step))
        total = sum(weighted.values())
        return total, {k: float(v.detach()) for k, v in weighted.items()}

    def diagnose(self, module: nn.Module, step: int) -> dict[str, float]:
        """Each weighted term's value, its gradient norm on the student's parameters and the cosine of that gradient
        with L_REC's, on the step's batch (``<term>``, ``<term>_grad``, ``<term>_cos``)."""
        weighted = self.weighted(module, self.term_values(module, self.batch(step), step), training=False)
        params = student_parameters(module)
        grads = {k: _flat_grad(v, params) for k, v in weighted.items()}
        out: dict[str, float] = {}
        for k, g in grads.items():
            out[k] = float(weighted[k].detach())
            out[f"{k}_grad"] = float(g.norm())
            if k != "rec":
                out[f"{k}_cos"] = float(F.cosine_similarity(g, grads["rec"], dim=0))
        return out

    def __call__(self, module: nn.Module, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        return self.losses(module, self.batch(step), step)


def student_parameters(module: nn.Module) -> list[torch.Tensor]:
    """The trainable parameters of the student inside a (DDP-wrapped) ``StudentWithProjections``."""
    net = getattr(module, "module", module)
    return [p for p in getattr(net, "student", net).parameters() if p.requires_grad]


def _flat_grad(value: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
    return torch.cat(
        [(torch.zeros_like(p) if g is None else g).reshape(-1).float() for g, p in zip(grads, params, strict=True)]
    )
