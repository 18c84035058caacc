"""napari-skd: soft knowledge distillation of Restormer restorers for large microscopy and medical images.

The entry points are imported lazily, so ``import napari_skd`` stays cheap (no torch).
"""

import importlib

__version__ = "0.1.0"

_LAZY = {
    "train_teacher": ("napari_skd.distillation.api", "train_teacher"),
    "distill": ("napari_skd.distillation.api", "distill"),
    "restore": ("napari_skd.restoration.api", "restore"),
    "load_checkpoint": ("napari_skd.checkpoint", "load_checkpoint"),
    "save_checkpoint": ("napari_skd.checkpoint", "save_checkpoint"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'napari_skd' has no attribute {name!r}")
