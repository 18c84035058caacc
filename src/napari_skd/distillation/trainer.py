"""The training loop shared by teacher training and distillation.

AdamW, linear warm-up then cosine decay, gradient clipping, AMP on GPUs, validation, resumable state every N steps
and on stop, progress events and a cancel flag. Under ``torchrun`` the trainable module is wrapped in torch DDP.
Resuming restores weights, optimiser and schedule; batches depend only on (seed, step, rank), so the resumed loss
sequence equals an uninterrupted run's on the CPU.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from ..device import amp_dtype, channels_last
from ..errors import InputError
from ..progress import Eta, ProgressEvent, ProgressFn, emit
from .config import TrainConfig

LossFn = Callable[[nn.Module, int], tuple[torch.Tensor, dict[str, float]]]


def warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    """Learning-rate factor: linear from 1/warmup to 1, then cosine to 0 at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


class Trainer:
    """Optimises ``module`` (all its parameters that require gradients)."""

    def __init__(self, module: nn.Module, cfg: TrainConfig, device: torch.device, state_path: Path, fingerprint: str):
        self.cfg, self.device, self.state_path, self.fingerprint = cfg, device, Path(state_path), fingerprint
        self.module = module.to(device, memory_format=channels_last(_spatial_dims(module)))
        self.wrapped: nn.Module = self.module
        if dist.is_initialized():
            ids = [device.index] if device.type == "cuda" else None
            self.wrapped = nn.parallel.DistributedDataParallel(self.module, device_ids=ids)
        params = [p for p in self.module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, warmup_cosine(cfg.warmup_steps, cfg.steps))
        dtype = amp_dtype(device) if cfg.amp else None
        self.scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
        self.step = 0
        self.history: list[dict[str, float]] = []

    # --- resumable state ------------------------------------------------------------------------------------------
    def save_state(self) -> None:
        if not is_main_process():
            return
        state = {
            "fingerprint": self.fingerprint,
            "step": self.step,
            "module": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "history": self.history,
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
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.history = int(state["step"]), list(state["history"])
        return True

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
        phase: str = "train",
    ) -> bool:
        """Train until ``cfg.steps``; returns False when stopped through ``cancel`` (state saved)."""
        cfg, total = self.cfg, self.cfg.steps
        eta = Eta(self.step)
        dtype = amp_dtype(self.device) if cfg.amp else None
        while self.step < total:
            if _cancelled(cancel):
                self.save_state()
                emit(progress, ProgressEvent("stopped", self.step, total, message="stopped; resumable state saved"))
                return False
            self.module.train()
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
            self.scheduler.step()
            self.step += 1
            record = {"step": float(self.step), "loss": float(loss.detach()), **parts}
            metrics: dict[str, float] = {}
            if is_main_process() and (self.step % cfg.val_every == 0 or self.step == total):
                metrics = validate()
                record.update({f"val_{k}": v for k, v in metrics.items()})
            self.history.append(record)
            if self.step % cfg.checkpoint_every == 0 and self.step < total:
                self.save_state()
            losses = {k: v for k, v in record.items() if k != "step" and not k.startswith("val_")}
            emit(progress, ProgressEvent(phase, self.step, total, losses, metrics, eta(self.step, total)))
        return True


def _spatial_dims(module: nn.Module) -> int:
    net = getattr(module, "student", module)  # a StudentWithProjections or a bare network
    return int(net.config.spatial_dims)


def _cancelled(cancel: threading.Event | None) -> bool:
    flag = bool(cancel is not None and cancel.is_set())
    if dist.is_initialized():  # every rank stops at the same step
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
        t = torch.tensor([int(flag)], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        flag = bool(t.item())
    return flag
