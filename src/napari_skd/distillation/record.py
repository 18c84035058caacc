"""What training leaves behind: validation metrics, the job's fingerprint for resuming, the checkpoint's record, and
the saved checkpoint.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from pydantic import BaseModel
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn

from ..checkpoint import save_checkpoint
from ..data.patches import PatchPlan
from ..data.sampler import Batch
from ..progress import ProgressEvent, emit
from .trainer import Trainer, is_main_process


def evaluate(model: nn.Module, val: Batch | None, device, teacher: nn.Module | None = None) -> dict[str, float]:
    """Validation metrics in normalised units (data range 1): PSNR/SSIM against clean, and against the teacher."""
    if val is None:
        return {}

    model.eval()
    with torch.no_grad():
        pred = model(val.input.to(device)).float().cpu().numpy()
        refs = {"": val.target.numpy() if val.target is not None else None}
        if teacher is not None:
            refs["_teacher"] = teacher(val.input.to(device)).float().cpu().numpy()
    metrics = {}
    for suffix, ref in refs.items():
        if ref is None:
            continue
        metrics["psnr" + suffix] = float(
            np.mean([peak_signal_noise_ratio(r, p, data_range=1.0) for r, p in zip(ref, pred, strict=True)])
        )
        metrics["ssim" + suffix] = float(
            np.mean([structural_similarity(r[c], p[c], data_range=1.0) for r, p in zip(ref, pred, strict=True)
                     for c in range(r.shape[0])])
        )  # fmt: skip
    return metrics


def held_out_record(plan: PatchPlan) -> list:
    """Each training image's validation region for the checkpoint record: ``[axis, count]`` or None."""
    return [None if h is None else [h.axis, h.count] for h in plan.held_out]


def fingerprint(job: BaseModel, extra: str = "") -> str:
    """Identity of a job for resuming: settings that change the result, and the data's shapes."""
    exclude = {"overwrite": True, "train": {"val_every", "checkpoint_every", "device"}}
    text = job.model_dump_json(exclude=exclude) + extra
    for source in (job.data.degraded, job.data.clean):
        if source is not None and not isinstance(source, str | list | tuple):
            text += f"{getattr(source, 'shape', '')}{getattr(source, 'dtype', '')}"
    return hashlib.sha256(text.encode()).hexdigest()


def training_record(job: BaseModel, trainer: Trainer, done: bool, resumed: bool, seconds: float, device) -> dict:
    last_val = next((h for h in reversed(trainer.history) if any(k.startswith("val_") for k in h)), {})
    validations = [
        {
            "step": int(h["step"]),
            "seconds": h.get("seconds"),
            **{k[4:]: v for k, v in h.items() if k.startswith("val_")},
            "terms": {k[5:]: v for k, v in h.items() if k.startswith("diag_")},
        }
        for h in trainer.history
        if "seconds" in h
    ]
    return {
        "data": job.data.model_dump(mode="json"),
        "train": job.train.model_dump(mode="json"),
        "steps": trainer.step,
        "completed": done,
        "resumed": resumed,
        "seed": job.train.seed,
        "metrics": {k[4:]: v for k, v in last_val.items() if k.startswith("val_")},
        "final_losses": {
            k: v
            for k, v in (trainer.history[-1] if trainer.history else {}).items()
            if k not in ("step", "seconds") and not k.startswith("diag_")
        },
        "seconds_this_run": round(seconds, 2),
        "seconds": round(trainer.seconds, 2),
        "max_time": job.train.max_time,
        "kept": trainer.best_record(),
        "validations": validations,
        "device": str(device),
        "world_size": dist.get_world_size() if dist.is_initialized() else 1,
    }


def finish(trainer, done, output, model, role, norm, record, teacher, progress) -> Path:
    if is_main_process():
        trainer.use_final()  # the best validation (keep_best), the moving average (train.ema) or the last weights
        model.to(memory_format=torch.contiguous_format)  # trained channels-last; saved in the default layout
        save_checkpoint(output, model, role=role, norm=norm, record=record, teacher=teacher)
        if done:
            trainer.discard_state()
    if dist.is_initialized():
        dist.barrier()
    phase, msg = ("done", f"saved {output}") if done else ("stopped", f"stopped at step {trainer.step}; saved {output}")
    emit(progress, ProgressEvent(phase, trainer.step, trainer.total(), message=msg))
    return output
