"""The training loop shared by teacher training and distillation.

AdamW, linear warm-up then cosine decay (over the steps, or over a wall-time budget), gradient clipping, AMP on GPUs,
validation with per-term gradient diagnostics, resumable state every N steps and on stop, progress events and a cancel
flag. Under ``torchrun`` the trainable module is wrapped in torch DDP. Resuming restores weights, optimiser, schedule
and the objective's balanced weights; batches depend only on (seed, step, rank), so the resumed loss sequence equals
an uninterrupted run's on the CPU (for step budgets; a time budget depends on the machine's speed).
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from ..device import amp_dtype, channels_last
from ..errors import InputError
from ..progress import Eta, Phase, ProgressEvent, ProgressFn, emit
from .config import TrainConfig

LossFn = Callable[[nn.Module, int], tuple[torch.Tensor, dict[str, float]]]


def lr_factor(step: int, warmup: int, progress: float) -> float:
    """Linear warm-up over ``warmup`` steps, then a cosine from 1 to 0 as ``progress`` goes from 0 to 1."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress))))


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


class Trainer:
    """Optimises ``module`` (all its parameters that require gradients)."""

    def __init__(
        self,
        module: nn.Module,
        cfg: TrainConfig,
        device: torch.device,
        state_path: Path,
        fingerprint: str,
        keep_best: bool = False,
    ):
        self.cfg, self.device, self.state_path, self.fingerprint = cfg, device, Path(state_path), fingerprint
        self.keep_best = keep_best
        self.best: dict | None = None  # with keep_best: {"metric", "score", "step", "weights"} of the best validation
        self.module = module.to(device, memory_format=channels_last(_spatial_dims(module)))
        self.wrapped: nn.Module = self.module
        if dist.is_initialized():
            ids = [device.index] if device.type == "cuda" else None
            self.wrapped = nn.parallel.DistributedDataParallel(self.module, device_ids=ids)
        params = [p for p in self.module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        dtype = amp_dtype(device) if cfg.amp else None
        self.scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
        self.step = 0
        self.seconds = 0.0  # wall time trained, over every run of this job
        self.history: list[dict[str, float]] = []
        self._objective_state: dict | None = None
        self.ema: dict[str, torch.Tensor] | None = None  # moving average of the trainable weights (train.ema)
        if cfg.ema > 0:
            self.ema = {n: p.detach().clone() for n, p in self.module.named_parameters() if p.requires_grad}

    # --- resumable state ------------------------------------------------------------------------------------------
    def save_state(self, objective: object = None) -> None:
        if not is_main_process():
            return
        state = {
            "fingerprint": self.fingerprint,
            "step": self.step,
            "seconds": self.seconds,
            "module": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "objective": objective.state_dict() if hasattr(objective, "state_dict") else None,
            "ema": self.ema,
            "history": self.history,
            "best": self.best,
        }
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.state_path)

    def try_resume(self) -> bool:
        """Load the saved state of this same job, if there is one."""
        if not self.state_path.exists():
            return False
        state = torch.load(self.state_path, map_location=self.device, weights_only=True)
        if state.get("fingerprint") != self.fingerprint:
            raise InputError(
                f"{self.state_path} holds the resumable state of a different job (other data or settings); "
                "delete it, or choose another output path"
            )
        self.module.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.history = int(state["step"]), list(state["history"])
        self.seconds, self._objective_state = float(state.get("seconds", 0.0)), state.get("objective")
        if self.ema is not None and state.get("ema") is not None:
            self.ema = state["ema"]
        self.best = state.get("best")
        return True

    # --- best validation ----------------------------------------------------------------------------------------
    def _consider(self, metrics: dict[str, float]) -> None:
        """Keep a copy of the weights validated now if they beat the best so far (``keep_best``)."""
        found = validation_score(metrics)
        if not self.keep_best or found is None:
            return
        metric, score = found
        if self.best is None or score > self.best["score"]:
            weights = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
            self.best = {"metric": metric, "score": score, "step": self.step, "weights": weights}

    def use_final(self) -> None:
        """Put the weights to save into the module: the best validated ones with ``keep_best``, else the moving
        average with ``train.ema``, else the last."""
        if self.best is not None:
            self.module.load_state_dict(self.best["weights"])
        else:
            self.use_averaged()

    def best_record(self) -> dict | None:
        """Which validation's weights were kept, for the checkpoint record."""
        if self.best is None:
            return None
        start = next((h for h in self.history if h.get("step") == 0 and "seconds" in h), {})
        metric = self.best["metric"]
        return {"metric": metric, "step": self.best["step"], "score": round(self.best["score"], 4),
                "start_score": start.get(f"val_{metric.lstrip('-')}")}  # fmt: skip

    # --- moving average ---------------------------------------------------------------------------------------------
    def _update_ema(self) -> None:
        """ema <- d ema + (1 - d) w, with d ramped up over the first steps (min(decay, (1 + t) / (10 + t)))."""
        if self.ema is None:
            return
        decay = min(self.cfg.ema, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            for name, p in self.module.named_parameters():
                if name in self.ema:
                    self.ema[name].lerp_(p.detach(), 1 - decay)

    @contextlib.contextmanager
    def averaged(self) -> Iterator[None]:
        """Inside: the module holds the averaged weights (no-op without ``train.ema``); the trained ones after."""
        if self.ema is None:
            yield
            return
        params = dict(self.module.named_parameters())
        trained = {n: params[n].detach().clone() for n in self.ema}
        self._load_weights(self.ema)
        try:
            yield
        finally:
            self._load_weights(trained)

    def use_averaged(self) -> None:
        """Put the averaged weights into the module for good (before saving the final model)."""
        if self.ema is not None:
            self._load_weights(self.ema)

    def _load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        params = dict(self.module.named_parameters())
        with torch.no_grad():
            for name, value in weights.items():
                params[name].copy_(value)

    def discard_state(self) -> None:
        if is_main_process() and self.state_path.exists():
            self.state_path.unlink()

    # --- loop -------------------------------------------------------------------------------------------------------
    def run(
        self,
        loss_fn: LossFn,
        validate: Callable[[], dict[str, float]],
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
        phase: Phase = "train",
    ) -> bool:
        """Train until ``cfg.steps`` or ``cfg.max_time``; returns False when stopped through ``cancel`` (state saved).

        A ``loss_fn`` with ``diagnose(module, step)`` is asked for per-term diagnostics at each validation; one with
        ``state_dict``/``load_state_dict`` has that state saved and resumed.
        """
        cfg = self.cfg
        if self._objective_state is not None and hasattr(loss_fn, "load_state_dict"):
            loss_fn.load_state_dict(self._objective_state)
        eta = Eta(self.step)
        dtype = amp_dtype(self.device) if cfg.amp else None
        start, seconds0 = time.perf_counter(), self.seconds
        if self.keep_best and self.best is None and is_main_process():  # the starting point is the first candidate
            with self.averaged():
                metrics = validate()
                self._consider(metrics)
            self.history.append(
                {"step": float(self.step), **{f"val_{k}": v for k, v in metrics.items()}, "seconds": 0.0}
            )
        done = self.finished()  # every rank calls finished() at the same points (it is collective under DDP)
        while not done:
            if _cancelled(cancel):
                self.save_state(loss_fn)
                emit(
                    progress,
                    ProgressEvent("stopped", self.step, self.total(), message="stopped; resumable state saved"),
                )
                return False
            self.module.train()
            for group in self.optimizer.param_groups:
                group["lr"] = cfg.lr * lr_factor(self.step, cfg.warmup_steps, self.progress())
            with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
                loss, parts = loss_fn(self.wrapped, self.step)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the loss became {loss.item()} at step {self.step}; lower the learning rate")
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(self.optimizer)
            else:
                loss.backward()
            if cfg.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(self.module.parameters(), cfg.clip_grad)
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.step += 1
            self._update_ema()
            self.seconds = seconds0 + time.perf_counter() - start
            done = self.finished()
            record = {"step": float(self.step), "loss": float(loss.detach()), **parts}
            metrics: dict[str, float] = {}
            diagnostics: dict[str, float] = {}
            if is_main_process() and (self.step % cfg.val_every == 0 or done):
                with self.averaged():
                    metrics = validate()
                    self._consider(metrics)
                if hasattr(loss_fn, "diagnose"):
                    diagnostics = loss_fn.diagnose(self.module, self.step)
                record.update({f"val_{k}": v for k, v in metrics.items()})
                record.update({f"diag_{k}": v for k, v in diagnostics.items()})
                record["seconds"] = round(self.seconds, 3)
            self.history.append(record)
            if self.step % cfg.checkpoint_every == 0 and not done:
                self.save_state(loss_fn)
            losses = {"loss": record["loss"], **parts}
            total = self.total()
            remaining = eta(self.step, total) if cfg.step_bound else max(0.0, cfg.max_time - self.seconds)
            emit(progress, ProgressEvent(phase, self.step, total, losses, metrics, remaining, diagnostics=diagnostics))
        return True

    def finished(self) -> bool:
        """The step budget or the time budget is spent (DDP ranks agree: rank 0's clock decides)."""
        done = self.step >= self.cfg.steps
        if self.cfg.max_time is not None:
            flag = self.seconds >= self.cfg.max_time
            if dist.is_initialized():
                t = torch.tensor([int(flag)], device=_collective_device())
                dist.broadcast(t, 0)
                flag = bool(t.item())
            done = done or flag
        return done

    def progress(self) -> float:
        """Fraction of the budget spent after warm-up: the larger of the step and time fractions."""
        cfg = self.cfg
        frac = (self.step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps) if cfg.step_bound else 0.0
        if cfg.max_time is not None:
            frac = max(frac, self.seconds / cfg.max_time)
        return frac

    def total(self) -> int:
        """The step budget, or for a time budget the steps expected at the current speed."""
        if self.cfg.step_bound or self.seconds <= 0:
            return self.cfg.steps if self.cfg.step_bound else max(self.step, 1)
        return max(self.step, round(self.step * self.cfg.max_time / self.seconds))


def validation_score(metrics: dict[str, float]) -> tuple[str, float] | None:
    """The figure a validation is judged by, higher is better: PSNR to clean data, else PSNR to the teacher, else
    minus Noise2Void's masked loss."""
    for name in ("psnr", "psnr_teacher"):
        if name in metrics:
            return name, float(metrics[name])
    if "n2v_mse" in metrics:
        return "-n2v_mse", -float(metrics["n2v_mse"])
    return None


def _spatial_dims(module: nn.Module) -> int:
    net = getattr(module, "student", module)  # a StudentWithProjections or a bare network
    return int(net.config.spatial_dims)


def _cancelled(cancel: threading.Event | None) -> bool:
    flag = bool(cancel is not None and cancel.is_set())
    if dist.is_initialized():  # every rank stops at the same step
        t = torch.tensor([int(flag)], device=_collective_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        flag = bool(t.item())
    return flag


def _collective_device() -> torch.device | None:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
