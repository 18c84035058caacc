"""Checks of a written package: bioimage.io validation, and reproducing its test output with each weights format."""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING

import numpy as np

from .layout import RTOL, ExportError
from .processing import apply_processing, as_steps
from .weights import load_torchscript, run_torchscript

if TYPE_CHECKING:
    from bioimageio.spec import ValidationContext, ValidationSummary


def validation_context() -> ValidationContext:
    """bioimage.io validation with file checks (hashes, test tensor shapes), quiet and offline."""
    from bioimageio.spec import ValidationContext  # optional dependency: imported on use

    return ValidationContext(perform_io_checks=True, log_warnings=False, progressbar=False)


def validate_package(package: str | os.PathLike) -> ValidationSummary:
    """Validate a package with bioimageio.spec (files, hashes, test tensor shapes; offline) and return its summary.

    Raises ``ExportError`` with the validator's messages when it fails. The best status without running the model
    in bioimageio.core is ``"valid-format"``.
    """
    from bioimageio.spec import InvalidDescr, load_description  # optional dependency: imported on use

    with validation_context():
        descr = load_description(package, perform_io_checks=True, progressbar=False)
    summary = descr.validation_summary
    if isinstance(descr, InvalidDescr) or summary.status == "failed":
        messages = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in summary.errors)
        raise ExportError(f"the bioimage.io package {package} is invalid: {messages}")
    return summary


def check_package(package: str | os.PathLike) -> dict[str, float]:
    """Reproduce the package's test output from its test input with each weights format and return the max errors.

    Applies the RDF's pre-processing, runs TorchScript (``torch.jit.load``) and ONNX (with onnxruntime, when
    installed), applies the post-processing and compares with the test output within the declared tolerance.
    """
    # optional dependency: imported on use
    from bioimageio.spec import load_model_description
    from bioimageio.spec.utils import get_reader, load_array

    with validation_context():
        descr = load_model_description(package, perform_io_checks=False, progressbar=False)
        x = load_array(descr.inputs[0].test_tensor)
        expected = load_array(descr.outputs[0].test_tensor)
        weights = {"torchscript": get_reader(descr.weights.torchscript).read()}
        if descr.weights.onnx is not None:
            weights["onnx"] = get_reader(descr.weights.onnx).read()
    declared = descr.config.bioimageio.reproducibility_tolerance
    rtol, atol = (
        (declared[0].relative_tolerance, declared[0].absolute_tolerance)
        if declared
        else (RTOL, RTOL * float(np.abs(expected).max()))
    )
    pre = apply_processing(as_steps(descr.inputs[0].preprocessing), x)
    errors = {}
    for fmt, blob in weights.items():
        if fmt == "torchscript":
            y = run_torchscript(load_torchscript(io.BytesIO(blob)), pre)
        else:
            try:
                import onnxruntime  # optional dependency: ONNX weights are checked only where it is installed
            except ImportError:
                continue
            session = onnxruntime.InferenceSession(blob, providers=["CPUExecutionProvider"])
            y = session.run(None, {session.get_inputs()[0].name: pre})[0]
        got = apply_processing(as_steps(descr.outputs[0].postprocessing), y)
        if got.shape != expected.shape or not np.allclose(got, expected, rtol=rtol, atol=atol):
            raise ExportError(f"the {fmt} weights in {package} do not reproduce the test output")
        errors[fmt] = float(np.abs(got - expected).max())
    return errors
