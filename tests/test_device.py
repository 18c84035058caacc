"""Device choice and mixed precision."""

import pytest
import torch

from napari_skd.device import amp_dtype, autocast, resolve_device
from napari_skd.errors import ConfigError


def test_auto_picks_an_available_device_and_says_which():
    dev, why = resolve_device("auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert dev.type in (expected, "mps")
    assert why.startswith("using ") and "(auto" in why


def test_explicit_cpu():
    assert resolve_device("cpu")[0] == torch.device("cpu")


def test_cpu_runs_in_full_precision():
    assert amp_dtype(torch.device("cpu")) is None
    with autocast(torch.device("cpu")):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_missing_cuda_is_explained(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA GPU is available"):
        resolve_device("cuda")


def test_unknown_device_is_explained():
    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run benchmarks/gpu_check.sh)")
def test_cuda_autocast_uses_half_precision():
    dev = torch.device("cuda")
    with autocast(dev):
        assert (torch.ones(2, 2, device=dev) @ torch.ones(2, 2, device=dev)).dtype in (
            torch.bfloat16,
            torch.float16,
        )
