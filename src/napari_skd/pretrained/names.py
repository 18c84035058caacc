"""The names of the shipped generalists and the files behind them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import CheckpointError

PREFIX = "pretrained:"
#: The shipped generalists by role (docs/pretrained.md).
TEACHER, CNN_TEACHER, STUDENT = "pretrained:general-2d", "pretrained:general-2d-cnn", "pretrained:general-2d-student"
WEIGHTS = Path(__file__).parent / "weights"
#: Name -> (file inside ``weights/``, what it is).
PRETRAINED: dict[str, tuple[str, str]] = {
    "general-2d": ("general-2d.pt", "generalist 2D teacher (Restormer), pretrained on synthetic and natural images"),
    "general-2d-cnn": ("general-2d-cnn.pt", "generalist 2D CNN teacher (unet-m), pretrained on the same corpus"),
    "general-2d-student": ("general-2d-student.pt", "generalist 2D student (unet-s), trained on the same corpus"),
}


def is_pretrained_name(value: Any) -> bool:
    """Whether ``value`` names a shipped model (``pretrained:NAME``)."""
    return isinstance(value, str) and value.startswith(PREFIX)


def resolve(value: str | os.PathLike) -> Path:
    """The file of ``pretrained:NAME``; refuses unknown names with the list of known ones."""
    name = str(value)[len(PREFIX) :]
    if name not in PRETRAINED:
        known = ", ".join(PREFIX + n for n in PRETRAINED)
        raise CheckpointError(f"unknown pretrained model {str(value)!r}; the shipped models are: {known}")
    path = WEIGHTS / PRETRAINED[name][0]
    if not path.exists():
        raise CheckpointError(
            f"the shipped model {value} is missing from this installation ({path}); reinstall napari-skd"
        )
    return path
