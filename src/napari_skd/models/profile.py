"""Parameter and FLOP counts (``torch.utils.flop_counter``) and CPU latency of a network."""

from __future__ import annotations

import time

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    """Number of trainable and frozen parameters."""
    return sum(p.numel() for p in model.parameters())


def input_shape(model: nn.Module, size: int, batch: int = 1) -> tuple[int, ...]:
    """Shape of a square (or cubic) input of side ``size`` for ``model``."""
    cfg = model.config
    return (batch, cfg.in_channels, *([size] * cfg.spatial_dims))


def count_flops(model: nn.Module, size: int) -> int:
    """FLOPs of one forward pass on a single ``size``-sided input (a multiply-add counts as 2).

    Counted on a weightless copy on the ``meta`` device: exact, instant, and independent of the model's device.
    """
    from torch.utils.flop_counter import FlopCounterMode  # loads torch tracing parts: only when counting

    with torch.device("meta"):
        shadow = type(model)(model.config)  # Restormer or UNet
        x = torch.zeros(input_shape(model, size))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        shadow(x)
    return int(counter.get_total_flops())


def latency(model: nn.Module, size: int, *, repeats: int = 3, warmup: int = 1) -> float:
    """Median seconds of one forward pass on a ``size``-sided input, after warm-up, without gradients."""
    x = torch.rand(input_shape(model, size), device=next(model.parameters()).device)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            model(x)
            if x.device.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def estimate_train_seconds(model: nn.Module, patch: int, batch: int, steps: int) -> float:
    """Rough wall time of ``steps`` training steps: one timed forward pass of a patch, times the batch, times 3
    (a backward pass costs about two forward passes)."""
    return latency(model, patch, repeats=1, warmup=0) * batch * 3 * steps
