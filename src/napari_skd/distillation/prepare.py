"""What both entry points set up before training: the device (and the torch DDP group), the network, the patch plan
and its sampler, and the warning when a large network would train slowly on a CPU.
"""

from __future__ import annotations

import logging
import math
import os

import torch
import torch.distributed as dist
from torch import nn

from ..data.patches import PatchPlan, plan_patches
from ..data.sampler import PatchSampler, check_pairs
from ..device import resolve_device
from ..models import ModelConfig, build_model, count_flops, count_params, estimate_train_seconds
from ..normalize import Normalization
from ..progress import ProgressEvent, ProgressFn, emit


def setup_device(name: str) -> tuple[torch.device, str]:
    """The training device and a sentence saying which; under torchrun, also joins the process group (gloo on
    CPUs, nccl on GPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and name != "cpu"
        dist.init_process_group("nccl" if use_cuda else "gloo")
        where = f"torch DDP over {world} processes ({'nccl, GPUs' if use_cuda else 'gloo, CPUs'})"
        if use_cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            return torch.device("cuda", local), where
        return torch.device("cpu"), where
    return resolve_device(name)


def build_network(spec: str | ModelConfig, cin: int, cout: int, spatial_dims: int) -> nn.Module:
    if isinstance(spec, ModelConfig):
        return build_model(spec)
    return build_model(spec, in_channels=cin, out_channels=cout, spatial_dims=spatial_dims)


#: Above this many FLOPs per pixel, training on a CPU is timed and a warning gives the estimated time (the published
#: ``teacher`` has 4.7 M; ``teacher-tiny`` 0.19 M).
SLOW_FLOPS_PER_PIXEL = 1e6


def warn_if_slow(
    model: nn.Module, plan: PatchPlan, data, train, device: torch.device, progress: ProgressFn | None
) -> None:
    """A large network on a CPU: say how long training will take, and what to do instead."""
    if device.type != "cpu" or count_flops(model, 64) / 64**model.config.spatial_dims < SLOW_FLOPS_PER_PIXEL:
        return
    size = f"this {count_params(model) / 1e6:.1f} M-parameter network"
    dims = model.config.spatial_dims
    side = max(1, round(math.prod(plan.sides) ** (1 / dims)))  # a square (cube) of the patch's size
    if train.step_bound:
        seconds = estimate_train_seconds(model, side, data.batch_size, train.steps)
        took = f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min" if seconds >= 60 else "1 min"
        what = f"training {size} on the CPU takes about {took} for {train.steps} steps"
        what += " (estimated from one timed forward pass)"
    else:
        per_step = estimate_train_seconds(model, side, data.batch_size, 1)
        what = f"{size} trains at about {per_step:.1f} s per step on the CPU"
        what += f", {train.max_time / per_step:.0f} steps in the time budget"
    message = f"warning: {what}; use a GPU, or a smaller preset such as teacher-tiny on a CPU"
    logging.getLogger("napari_skd").warning(message)
    emit(progress, ProgressEvent("prepare", 0, train.steps if train.step_bound else 0, message=message))


def planned_steps(job) -> int:
    """Steps shown before training starts: the step budget, or 0 for a time budget (the total is not known yet)."""
    return job.train.steps if job.train.step_bound else 0


def patch_plan(
    data, degraded, clean, model: nn.Module, progress: ProgressFn | None, planned: int, unlabelled=None
) -> PatchPlan:
    """The training patch and validation regions for the (aligned) ``degraded`` and ``clean`` images (a patch that
    fits ``unlabelled`` too) and ``model``; a ``patch_size`` left unset fits small images. Every choice made for the
    data is reported (as progress messages, or logged without them)."""
    check_pairs(degraded, clean)
    plan = plan_patches(
        [v.shape for v in degraded or clean], data.patch_size, spatial_dims=model.config.spatial_dims,
        multiple=model.multiple, val_fraction=data.val_fraction, fit="patch_size" not in data.model_fields_set,
        unvalidated=[v.shape for v in unlabelled or []],
    )  # fmt: skip
    for note in plan.notes:
        if progress is None:
            logging.getLogger("napari_skd").info(note)
        emit(progress, ProgressEvent("prepare", 0, planned, message=note))
    return plan


def make_sampler(
    data,
    plan: PatchPlan,
    degraded,
    clean,
    norm: Normalization,
    seed: int,
    val_fraction: float | None = None,
    labels: list | None = None,
) -> PatchSampler:
    """A sampler drawing ``plan``'s patches."""
    return PatchSampler(
        degraded, clean, norm, spatial_dims=plan.spatial_dims, patch_size=plan.sides, seed=seed,
        degradation=data.degradation,
        val_fraction=data.val_fraction if val_fraction is None else val_fraction, val_patches=data.val_patches,
        augment=data.augment, reject_background=data.reject_background, labels=labels,
    )  # fmt: skip
