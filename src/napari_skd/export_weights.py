"""Weight formats of a bioimage.io package: TorchScript (traced), ONNX, and the no-Python-pickle audit.

Tracing records the network for inputs whose spatial sizes are multiples of ``model.multiple`` (8): the model's
reflect padding is a no-op there and is not part of the trace, so the exported weights accept exactly those sizes
(any multiple of 8, checked on two different shapes). The package declares this as ``min + n * 8`` sizes.
"""

from __future__ import annotations

import io
import pickletools
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

ONNX_OPSET = 17

# Python-pickle globals a TorchScript archive may name. ``__torch__.*`` are TorchScript classes resolved by the
# TorchScript type system (never imported as Python code); the rest rebuild tensors and containers.
_TORCHSCRIPT_GLOBALS = {
    "collections": {"OrderedDict"},
    "torch._utils": {"_rebuild_tensor_v2"},
    "torch.jit._pickle": {
        "restore_type_tag",
        "build_intlist",
        "build_doublelist",
        "build_boollist",
        "build_tensorlist",
    },
}
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".joblib")


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
    import onnx

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
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return ref.verify(lambda a: session.run(None, {"input": a})[0], rtol)


# --- the no-pickle audit ----------------------------------------------------------------------------------------


def pickle_globals(data: bytes) -> set[str]:
    """``module.name`` of every global a pickle stream references (what unpickling would import), without loading it.

    Protocol-2 ``GLOBAL`` names are exact; ``STACK_GLOBAL``, ``INST`` and ``OBJ`` are reported in ``<...>``, which
    no allow-list accepts.
    """
    found, strings = set(), []
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            module, name = str(arg).split(" ", 1)
            found.add(f"{module}.{name}")
        elif op.name == "STACK_GLOBAL":  # operands may come from the memo: never trusted
            found.add(f"<STACK_GLOBAL {'.'.join(strings[-2:])}>")
        elif op.name in ("INST", "OBJ"):
            found.add(f"<{op.name} {arg}>")
        elif isinstance(arg, str):
            strings.append(arg)
    return found


def _torchscript_global_ok(ref: str) -> bool:
    if ref.startswith("__torch__."):
        return True
    module, _, name = ref.rpartition(".")
    if module == "torch" and name.endswith("Storage"):
        return True
    return name in _TORCHSCRIPT_GLOBALS.get(module, set())


def _is_pickle(data: bytes) -> bool:
    return len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5  # PROTO opcode, protocols 2-5


def unsafe_pickles(package: str | Path) -> list[str]:
    """Members of a package zip that are, or may hold, Python pickles able to run code; empty means none.

    Flagged: a member that starts like a pickle (protocol 2-5) or has a pickle/PyTorch suffix (``.pkl``, ``.pt``,
    ...) and is not a zip archive; a ``.npy`` array of Python objects; a zip archive (such as a ``torch.save`` file)
    holding a pickle, unless it is a TorchScript archive whose pickles name only tensor-rebuilding functions,
    containers and TorchScript classes (``_TORCHSCRIPT_GLOBALS``): the restricted format ``torch.jit.load`` reads.
    """
    bad: list[str] = []
    with zipfile.ZipFile(package) as z:
        for name in z.namelist():
            data = z.read(name)
            if data[:4] == b"PK\x03\x04":
                bad += [f"{name}: {problem}" for problem in _archive_problems(data)]
            elif _is_pickle(data) or name.lower().endswith(_PICKLE_SUFFIXES) or _is_object_npy(data):
                bad.append(name)
    return bad


def _is_object_npy(data: bytes) -> bool:
    """A ``.npy`` that numpy refuses to load without pickle (an array of Python objects)."""
    if not data.startswith(b"\x93NUMPY"):
        return False
    try:
        np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError:
        return True
    return False


def _archive_problems(archive: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        names = z.namelist()
        torchscript = any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)
        problems = []
        for n in names:
            data = z.read(n)
            if not (n.endswith(".pkl") or _is_pickle(data)):
                continue
            if not torchscript:
                problems.append(f"{n} is a Python pickle")
                continue
            problems += [f"{n} references {g}" for g in sorted(pickle_globals(data)) if not _torchscript_global_ok(g)]
        return problems
