"""napari-skd: soft knowledge distillation of Restormer restorers for large microscopy and medical images."""

__version__ = "0.1.0"
