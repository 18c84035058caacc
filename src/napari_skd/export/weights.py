"""Weight formats of a bioimage.io package: TorchScript (traced) and ONNX, each checked against the PyTorch model.

Tracing records the network for inputs whose spatial sizes are multiples of ``model.multiple`` (8): the model's
reflect padding is a no-op there and is not part of the trace, so the exported weights accept exactly those sizes
(any multiple of 8, checked on two different shapes). The package declares this as ``min + n * 8`` sizes.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .layout import ONNX_OPSET


@dataclass
class WeightsCheck:
    """Largest absolute difference to the PyTorch model on the test input and on a second input shape."""

    test_error: float
    other_shape: tuple[int, ...]
    other_error: float


def other_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A second, small input shape: batch 2, spatial sizes that are multiples of 8, differ from ``shape`` and
    from each other (so sizes baked into a trace would show)."""
    sizes = [s for s in (16, 24, 40, 48) if s not in shape[2:]]
    return (2, shape[1], *sizes[: len(shape) - 2])


class Reference:
    """The eager model's outputs on the test input and on a second shape, computed once for every format's check."""

    def __init__(self, model: nn.Module, x: np.ndarray):
        other = np.random.default_rng(1).random(other_shape(x.shape), dtype=np.float32)
        self.inputs = [x, other]
        with torch.no_grad():
            self.outputs = [model(torch.from_numpy(a)).numpy() for a in self.inputs]

    def verify(self, run: Callable[[np.ndarray], np.ndarray], rtol: float) -> WeightsCheck:
        """Run ``run`` on both inputs; raise ValueError unless it matches within ``rtol`` of the output's peak."""
        errors = []
        for inp, expected in zip(self.inputs, self.outputs, strict=True):
            got = np.asarray(run(inp))
            if got.shape != expected.shape:
                raise ValueError(f"output shape {got.shape} differs from the PyTorch model's {expected.shape}")
            err = float(np.abs(got - expected).max())
            if not err <= rtol * (float(np.abs(expected).max()) or 1.0):
                raise ValueError(f"differs from the PyTorch model by {err:.3g} on an input of shape {inp.shape}")
            errors.append(err)
        return WeightsCheck(errors[0], self.inputs[1].shape, errors[1])


def export_torchscript(
    model: nn.Module, ref: Reference, path: Path, rtol: float = 1e-4
) -> tuple[WeightsCheck, torch.jit.ScriptModule]:
    """Trace ``model`` on the test input (model units, sizes multiples of 8), save it, check the reloaded archive.

    Returns the check and the reloaded module.
    """
    x = torch.from_numpy(ref.inputs[0])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarning for the padding branch, deprecation notices
        traced = torch.jit.trace(model, x, check_trace=False)
    traced.save(str(path))
    loaded = load_torchscript(path)

    return ref.verify(lambda a: run_torchscript(loaded, a), rtol), loaded


def load_torchscript(source: Path | io.BytesIO) -> torch.jit.ScriptModule:
    """``torch.jit.load`` on the CPU, in eval mode, without its deprecation notice."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(source if isinstance(source, io.BytesIO) else str(source), map_location="cpu").eval()


def run_torchscript(module: torch.jit.ScriptModule, x: np.ndarray) -> np.ndarray:
    """One forward pass, without the graph optimiser (which only pays off over many calls)."""
    with torch.no_grad(), torch.jit.optimized_execution(False):
        return module(torch.from_numpy(x)).numpy()


def export_onnx(module: torch.jit.ScriptModule, ref: Reference, path: Path, rtol: float = 1e-4) -> WeightsCheck | None:
    """Convert the TorchScript ``module`` to ONNX with dynamic batch and spatial axes and check it against ``ref``.

    Checked with onnxruntime when it is installed (returns the errors), else only with ``onnx.checker`` (returns None).
    Raises an exception when export or the check fails.
    """
    import onnx  # optional dependency: imported on use

    example = ref.inputs[0]
    spatial = "zyx"[3 - (example.ndim - 2) :]
    dynamic = {0: "batch", **{2 + i: a for i, a in enumerate(spatial)}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.from_numpy(example),),
            str(path),
            dynamo=False,  # the TorchScript-based exporter: no onnxscript needed, symbolic spatial sizes
            opset_version=ONNX_OPSET,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": dynamic, "output": dynamic},
        )
    onnx.checker.check_model(str(path), full_check=True)
    try:
        import onnxruntime  # optional dependency: without it the ONNX file is only checked by onnx.checker
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return ref.verify(lambda a: session.run(None, {"input": a})[0], rtol)
