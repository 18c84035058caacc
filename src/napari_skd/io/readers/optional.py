"""Importing the optional packages of the medical extra, with an error that says how to install them."""

from __future__ import annotations

import importlib
from types import ModuleType

from ...errors import InputError


def require(module: str, purpose: str) -> ModuleType:
    """``module`` imported, or an :class:`InputError` naming the extra to install for ``purpose``."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise InputError(
            f"{purpose} needs the {module} package, which is not installed; "
            "install the medical extra: pip install -e '.[medical]' in your napari-skd clone (or pip install "
            "nibabel pydicom)"
        ) from err
