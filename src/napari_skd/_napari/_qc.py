"""The fidelity QC map: each checked block's PSNR of the student against the teacher, drawn over the image on a
fixed dB scale, with a colour bar on the canvas, a legend in the dock and the block under the cursor in words.

PSNR is in the normalised units the student restored in (its checkpoint's low and high training percentiles are 0
and 1, or the image's own for a shipped generalist or 'renormalize'; data range 1), as in
:mod:`~napari_skd.restoration.fidelity`. The scale runs from :data:`PSNR_RANGE` low (red: far from the teacher)
to high (dark blue, faint: close to it); values outside are clipped to its ends, identical blocks (+inf) show at
the top, and unchecked blocks (NaN) are left transparent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from magicgui.widgets import Container, Label
from napari.utils.colormaps import Colormap
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QSizePolicy

from ..restoration.fidelity import FidelityReport
from ._qt import wrapped_label

#: The map's fixed scale in dB: the same colour means the same fidelity in every run.
PSNR_RANGE = (20.0, 50.0)
#: (dB, RGBA) stops of the colour scale: red and opaque where the student is far from the teacher, orange at 30 dB,
#: dark blue and faint at the top, so the image stays readable under blocks that are fine.
STOPS = ((20.0, (1.0, 0.1, 0.1, 0.9)), (30.0, (1.0, 0.6, 0.0, 0.7)), (50.0, (0.15, 0.25, 0.55, 0.35)))


def qc_colormap() -> Colormap:
    """The QC map's colormap over :data:`PSNR_RANGE` (NaN transparent)."""
    low, high = PSNR_RANGE
    controls = [(db - low) / (high - low) for db, _ in STOPS]
    return Colormap(colors=[c for _, c in STOPS], controls=controls, name="skd-qc-psnr", nan_color="transparent")


def heatmap_layer(
    report: FidelityReport, axes: str, scale: Sequence[float], translate: Sequence[float]
) -> tuple[np.ndarray, dict[str, Any]]:
    """Image-layer data and keyword arguments: one cell per output block holding its PSNR in dB (NaN unchecked,
    +inf identical), in the restored layer's axis order ``axes`` (a C axis becomes 1 long), placed over the blocks
    it measures."""
    grid, step = report.psnr_grid()
    data = grid.transpose([report.axes.index(a) for a in axes if a != "C"])
    cell_scale, cell_translate, steps = [], [], []
    for i, a in enumerate(axes):
        if a == "C":
            data = np.expand_dims(data, i)
        n = step.get(a, 1)
        steps.append(n)
        cell_scale.append(float(scale[i]) * n)
        cell_translate.append(float(translate[i]) + float(scale[i]) * (n - 1) / 2)  # cell centres on block centres
    kwargs = {
        "scale": cell_scale,
        "translate": cell_translate,
        "colormap": qc_colormap(),
        "blending": "translucent",
        "contrast_limits": PSNR_RANGE,
        "interpolation2d": "nearest",
        "metadata": {"qc": report.to_attrs(), "cells": {"axes": axes, "step": steps, "size": dict(report.shape)}},
    }
    return data, kwargs


def describe(psnr: float) -> str:
    """One map cell in words."""
    if math.isnan(psnr):
        return "not checked"
    if math.isinf(psnr):
        return "identical to the teacher"
    return f"PSNR {psnr:.1f} dB"


def cell_text(layer, world: Sequence[float]) -> str:
    """The block of the QC map ``layer`` under the world position ``world`` and its PSNR ('' outside the map)."""
    index = np.round(layer.world_to_data(world)).astype(int)
    shape = layer.data.shape
    if any(i < 0 or i >= n for i, n in zip(index, shape, strict=True)):
        return ""
    cells = layer.metadata["cells"]
    where = []
    for a, i, n in zip(cells["axes"], index, cells["step"], strict=True):
        if a != "C":
            where.append(f"{a} {i}" if n == 1 else f"{a} {i * n}:{min((i + 1) * n, cells['size'][a])}")
    return f"block {', '.join(where)}: {describe(float(layer.data[tuple(index)]))}"


def _gradient() -> str:
    """A Qt style sheet drawing :data:`STOPS` as a horizontal gradient."""
    low, high = PSNR_RANGE
    stops = ", ".join(
        f"stop:{(db - low) / (high - low):.3f} rgba({', '.join(str(round(255 * v)) for v in rgba)})"
        for db, rgba in STOPS
    )
    return f"background: qlineargradient(x1:0, y1:0, x2:1, y2:0, {stops}); border: 1px solid grey;"


class QcLegend:
    """The QC map's scale for the Restore form (what it shows, a gradient with its dB ticks, what the colours mean)
    and the block under the cursor; hidden until a map is shown. Its ``widgets`` go straight into the form: a label
    in a nested container there is given too little height."""

    def __init__(self) -> None:
        self.title = Label(value="QC map: PSNR, student vs teacher")
        self.bar = Label(value="")
        self.bar.native.setStyleSheet(_gradient())
        self.bar.native.setFixedHeight(14)
        self.bar.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)  # the form's width
        low, high = PSNR_RANGE
        ticks = [Label(value=f"{low:g} dB"), Label(value=f"{(low + high) / 2:g} dB"), Label(value=f"{high:g} dB +")]
        for tick, align in zip(ticks, (Qt.AlignmentFlag.AlignLeft, Qt.AlignmentFlag.AlignHCenter,
                                       Qt.AlignmentFlag.AlignRight), strict=True):  # fmt: skip
            tick.native.setAlignment(align)  # three equal cells: the ticks sit at 0, 1/2 and 1 of the bar
            tick.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.ticks = Container(widgets=ticks, layout="horizontal", labels=False)
        self.ticks.margins = (0, 0, 0, 0)
        self.meaning = Label(value="red: far from the teacher; dark blue: close\nor identical; no colour: not checked")
        self.cursor = wrapped_label(value="")
        self.widgets = [self.title, self.bar, self.ticks, self.meaning, self.cursor]
        self.show(False)

    def show(self, on: bool = True) -> None:
        for widget in self.widgets:
            widget.visible = on

    @property
    def shown(self) -> bool:
        """Whether it is switched on (``visible`` also needs the window on screen)."""
        return not self.title.native.isHidden()
