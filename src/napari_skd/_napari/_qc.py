"""The fidelity QC heat map: each checked block's RMS student-vs-teacher difference, drawn over the image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..restoration.fidelity import FidelityReport


def heatmap_layer(
    report: FidelityReport, axes: str, scale: Sequence[float], translate: Sequence[float]
) -> tuple[np.ndarray, dict[str, Any]]:
    """Image-layer data and keyword arguments: one cell per output block (0 where unchecked or identical), in the
    restored layer's axis order ``axes`` (a C axis becomes 1 long), placed over the blocks it measures."""
    grid, step = report.heatmap()
    data = grid.transpose([report.axes.index(a) for a in axes if a != "C"])
    cell_scale, cell_translate = [], []
    for i, a in enumerate(axes):
        if a == "C":
            data = np.expand_dims(data, i)
        n = step.get(a, 1)
        cell_scale.append(float(scale[i]) * n)
        cell_translate.append(float(translate[i]) + float(scale[i]) * (n - 1) / 2)  # cell centres on block centres
    kwargs = {
        "scale": cell_scale,
        "translate": cell_translate,
        "colormap": "inferno",
        "blending": "additive",
        "opacity": 0.7,
        "contrast_limits": (0.0, max(float(data.max()), 1e-3)),
        "metadata": {"qc": report.to_attrs()},
    }
    return data, kwargs
