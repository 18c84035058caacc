"""What every part of a bioimage.io package agrees on: file names, the input-size rule, tolerances, the error type."""

from __future__ import annotations

from ..errors import SkdError

MULTIPLE = 8  # spatial sizes the traced weights accept are multiples of this
DEFAULT_HALO = {2: 24, 3: 12}  # by spatial dimensions
DEFAULT_TEST_SIZE = {2: 64, 3: 32}
RTOL = 1e-3  # reproducibility tolerance declared in the package and used by check_package
ONNX_OPSET = 17
TORCHSCRIPT_FILE, ONNX_FILE = "weights_torchscript.pt", "weights.onnx"
README_FILE, RECORD_FILE = "README.md", "training_record.json"


class ExportError(SkdError):
    """The export produced an invalid package or weights that do not reproduce the model (an internal failure)."""


def min_input_size(halo: int) -> int:
    """Smallest valid input side: a multiple of 8 leaving at least 1 pixel after cropping ``halo`` from both sides."""
    return -(-(2 * halo + 1) // MULTIPLE) * MULTIPLE
