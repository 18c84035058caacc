"""Device choice (CUDA, then MPS, then CPU), mixed precision where the device supports it, channels-last layout."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from .errors import ConfigError


def resolve_device(name: str | torch.device = "auto") -> tuple[torch.device, str]:
    """The device to run on and a sentence saying which one and why."""
    if isinstance(name, torch.device):
        name = str(name)
    name = name.lower()
    if name == "auto":
        if torch.cuda.is_available():
            dev = torch.device("cuda")
            return dev, f"using CUDA GPU {torch.cuda.get_device_name(dev)} (auto)"
        if _mps_available():
            return torch.device("mps"), "using Apple MPS GPU (auto)"
        return torch.device("cpu"), f"using CPU with {torch.get_num_threads()} threads (auto: no GPU found)"
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {name!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was requested but no CUDA GPU is available; use --device auto or cpu")
    if dev.type == "mps" and not _mps_available():
        raise ConfigError("device 'mps' was requested but Apple MPS is not available; use --device auto or cpu")
    return dev, f"using {dev}"


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a device: bf16 where CUDA supports it, else fp16 on GPUs, none on the CPU."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return None


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool = True) -> Iterator[None]:
    """Mixed precision on GPUs; a no-op on the CPU (where it would be slower) or when disabled."""
    dtype = amp_dtype(device) if enabled else None
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def channels_last(spatial_dims: int) -> torch.memory_format:
    """Channels-last layout: oneDNN's fast path for convolutions (1.3-2x on the CPU for our presets, measured by
    ``benchmarks/restore_speed.py``), and the layout tensor cores prefer."""
    return torch.channels_last if spatial_dims == 2 else torch.channels_last_3d


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """An image batch ``(N, C, [Z,] Y, X)`` on ``device`` in channels-last layout (other tensors just moved)."""
    if t.ndim not in (4, 5):
        return t.to(device)
    return t.to(device, memory_format=channels_last(t.ndim - 2))
