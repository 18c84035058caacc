"""A live plot of loss parts and validation PSNR (matplotlib in Qt), redrawn at most a few times a second."""

from __future__ import annotations

import time

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

from ..progress import ProgressEvent


class LossPlot:
    """Collects progress events; ``native`` is a Qt widget for a magicgui container."""

    def __init__(self) -> None:

        self.figure = Figure(figsize=(4, 2.6), tight_layout=True)
        self.loss_ax = self.figure.add_subplot(111)
        self.psnr_ax = self.loss_ax.twinx()
        self.native = FigureCanvasQTAgg(self.figure)
        self.native.setMinimumHeight(180)
        self.clear()

    def clear(self) -> None:
        self.series: dict[str, list[tuple[int, float]]] = {}
        self.psnr: list[tuple[int, float]] = []
        self.grads: dict[str, list[tuple[int, float]]] = {}  # gradient norm of each weighted term, at validations
        self._phase_offset, self._last_phase, self._last_draw = 0, None, 0.0
        self.draw()

    def add(self, e: ProgressEvent) -> None:
        if e.phase not in ("train", "teacher") or not e.losses:
            return
        key = e.phase
        if self._last_phase not in (None, key):  # teacher then student: plot one after the other
            self._phase_offset = max((s for pts in self.series.values() for s, _ in pts), default=0)
        self._last_phase = key
        step = self._phase_offset + e.step
        for name, value in e.losses.items():
            self.series.setdefault(f"{key}:{name}", []).append((step, value))
        if "psnr" in e.metrics:
            self.psnr.append((step, e.metrics["psnr"]))
        for name, value in e.diagnostics.items():
            if name.endswith("_grad"):
                self.grads.setdefault(f"|grad {name[:-5]}|", []).append((step, value))
        if time.monotonic() - self._last_draw > 0.3 or e.step == e.total:
            self.draw()

    def draw(self) -> None:
        self._last_draw = time.monotonic()
        self.loss_ax.clear()
        self.psnr_ax.clear()
        for name, pts in self.series.items():
            self.loss_ax.plot(*zip(*pts, strict=True), label=name, lw=1)
        for name, pts in self.grads.items():
            self.loss_ax.plot(*zip(*pts, strict=True), "x:", label=name, lw=1)
        if self.psnr:
            self.psnr_ax.plot(*zip(*self.psnr, strict=True), "k.--", label="val PSNR")
            self.psnr_ax.set_ylabel("PSNR dB")
        self.loss_ax.set_yscale("log" if self.series else "linear")
        self.loss_ax.set_xlabel("step")
        if self.series:
            self.loss_ax.legend(fontsize=6, loc="upper right")
        self.native.draw_idle()
