"""A live plot of training (matplotlib in Qt), redrawn at most a few times a second: loss parts, validation PSNR,
and each distillation term's share of the gradient, on three stacked panels with their legends above them."""

from __future__ import annotations

import time

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

from ..progress import ProgressEvent

#: Who trains in each plotted phase (the Distil widget marks a teacher trained first as "teacher").
WHO = {"teacher": "teacher", "train": "student"}


def gradient_shares(norms: dict[str, float]) -> dict[str, float]:
    """Each term's share of the summed gradient norms (``{"rec_grad": 3, "gk_grad": 1}`` -> rec 0.75, gk 0.25)."""
    grads = {k.removesuffix("_grad"): max(v, 0.0) for k, v in norms.items() if k.endswith("_grad")}
    total = sum(grads.values())
    return {k: v / total for k, v in grads.items()} if total > 0 else {}


class LossPlot:
    """Collects progress events; ``native`` is a Qt widget for a magicgui container.

    Panels, sharing the step axis: loss parts (log scale), validation PSNR (markers), and the share of each
    weighted term in the gradient (stacked bars at each validation, from ``ProgressEvent.diagnostics``).
    """

    def __init__(self) -> None:
        self.figure = Figure(figsize=(4, 5.4), layout="constrained")
        self.loss_ax, self.psnr_ax, self.share_ax = self.figure.subplots(3, 1, sharex=True, height_ratios=(3, 2, 2))
        self.native = FigureCanvasQTAgg(self.figure)
        self.native.setMinimumHeight(380)
        self.clear()

    def clear(self) -> None:
        self.series: dict[str, list[tuple[int, float]]] = {}  # "<who> <loss part>" -> (step, value)
        self.psnr: dict[str, list[tuple[int, float]]] = {}  # "<who> val PSNR" -> (step, dB)
        self.shares: list[tuple[int, dict[str, float]]] = []  # (step, {term: share of the gradient})
        self._phase_offset, self._last_phase, self._last_draw = 0, None, 0.0
        self.draw()

    def add(self, e: ProgressEvent) -> None:
        if e.phase not in WHO or not e.losses:
            return
        if self._last_phase not in (None, e.phase):  # teacher then student: plot one after the other
            self._phase_offset = max((s for pts in self.series.values() for s, _ in pts), default=0)
        self._last_phase = e.phase
        step, who = self._phase_offset + e.step, WHO[e.phase]
        parts = [k for k in e.losses if k != "loss"]
        for name, value in e.losses.items():
            if name == "loss" or len(parts) > 1:  # a single part is the loss itself: one line
                self.series.setdefault(f"{who} {name}", []).append((step, value))
        if "psnr" in e.metrics:
            self.psnr.setdefault(f"{who} val PSNR", []).append((step, e.metrics["psnr"]))
        shares = gradient_shares(e.diagnostics)
        if shares:
            self.shares.append((step, shares))
        if time.monotonic() - self._last_draw > 0.3 or e.step == e.total:
            self.draw()

    def draw(self) -> None:
        self._last_draw = time.monotonic()
        for ax in (self.loss_ax, self.psnr_ax, self.share_ax):
            ax.clear()
        for name, pts in self.series.items():
            self.loss_ax.plot(*zip(*pts, strict=True), label=name, lw=1)
        self.loss_ax.set_yscale("log" if self.series else "linear")
        self.loss_ax.set_ylabel("loss")
        for name, pts in self.psnr.items():
            self.psnr_ax.plot(*zip(*pts, strict=True), marker="o", ms=4, lw=0.8, label=name)
        self.psnr_ax.set_ylabel("PSNR dB")
        self._draw_shares()
        self.share_ax.set_ylabel("gradient share")
        self.share_ax.set_xlabel("step")
        for ax in (self.loss_ax, self.psnr_ax, self.share_ax):
            if ax.get_legend_handles_labels()[0]:  # above the panel, outside the data
                ax.legend(fontsize=6, loc="lower left", bbox_to_anchor=(0, 1.02, 1, 0), mode="expand", ncols=3,
                          borderaxespad=0, frameon=False)  # fmt: skip
        self.native.draw_idle()

    def _draw_shares(self) -> None:
        """Stacked bars: at each validation step, every term's share of the summed gradient norms (sums to 1)."""
        self.share_ax.set_ylim(0, 1)
        if not self.shares:
            return
        steps = [s for s, _ in self.shares]
        gaps = [b - a for a, b in zip(steps, steps[1:], strict=False) if b > a]
        width = 0.8 * min(gaps) if gaps else max(1.0, 0.05 * steps[-1])
        terms = list(dict.fromkeys(t for _, shares in self.shares for t in shares))
        bottom = [0.0] * len(steps)
        for term in terms:
            heights = [shares.get(term, 0.0) for _, shares in self.shares]
            self.share_ax.bar(steps, heights, width=width, bottom=bottom, label=term)
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
