"""A fidelity report: how far the student's output departs from its teacher's on a sample of output blocks.

Pure data (no torch): built by :func:`~.qc.check_fidelity`, stored as JSON in the output's attributes under ``qc``
(OME-Zarr) or in its record (OME-TIFF, NIfTI), printed by the CLI and drawn as a PSNR map by the Restore widget.
Differences are in the checkpoint's normalised units, where its low and high training percentiles are 0 and 1, so a
PSNR uses a data range of 1. A block where the two outputs are identical gets :data:`MAX_PSNR`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: The PSNR of identical outputs (JSON has no infinity): far above any real difference in float32.
MAX_PSNR = 100.0


def block_psnr(student: np.ndarray, teacher: np.ndarray) -> tuple[float, float]:
    """``(PSNR dB, largest |difference|)`` of two blocks in normalised units (data range 1)."""
    diff = student.astype(np.float64) - teacher.astype(np.float64)
    mse = float(np.mean(diff**2)) if diff.size else 0.0
    psnr = MAX_PSNR if mse == 0 else min(MAX_PSNR, 10 * math.log10(1 / mse))
    return psnr, float(np.max(np.abs(diff))) if diff.size else 0.0


@dataclass(frozen=True)
class BlockFidelity:
    """One checked block: its key, where it lies (outer axes at one index, spatial axes as ``[start, stop)``),
    the student-vs-teacher PSNR and largest difference, the student's residual and why it was chosen."""

    key: str
    position: dict[str, int | list[int]]
    psnr: float
    max_abs: float
    residual: float  # mean |input - student| in normalised units: how much the student changed the block
    chosen: str  # "hardest" (largest residual) or "random" (the seeded sample)

    def where(self) -> str:
        """``T 3, Y 0:256, X 256:512``."""
        return ", ".join(f"{a} {v[0]}:{v[1]}" if isinstance(v, list) else f"{a} {v}" for a, v in self.position.items())


@dataclass
class FidelityReport:
    """The checked blocks of one output, the teacher and student they compare, and how they were sampled."""

    teacher: str  # model hash
    teacher_name: str
    student: str  # model hash
    fraction: float
    seed: int
    blocks_total: int
    axes: str  # output axes without C (canonical order), for the heat map
    block_shape: dict[str, int]  # output block (chunk) size per spatial axis
    shape: dict[str, int]  # output size per axis of ``axes``
    blocks: list[BlockFidelity] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """Blocks checked, PSNR min / median / mean, the largest difference and the worst block."""
        psnrs = [b.psnr for b in self.blocks]
        worst = min(self.blocks, key=lambda b: b.psnr) if self.blocks else None
        return {
            "blocks_checked": len(self.blocks),
            "blocks_total": self.blocks_total,
            "psnr_min": min(psnrs, default=MAX_PSNR),
            "psnr_median": float(np.median(psnrs)) if psnrs else MAX_PSNR,
            "psnr_mean": float(np.mean(psnrs)) if psnrs else MAX_PSNR,
            "max_abs": max((b.max_abs for b in self.blocks), default=0.0),
            "worst": worst.key if worst else None,
        }

    def worst(self, n: int = 5) -> list[BlockFidelity]:
        """The ``n`` blocks of lowest PSNR, worst first."""
        return sorted(self.blocks, key=lambda b: (b.psnr, -b.max_abs))[:n]

    def lines(self, worst: int = 5) -> list[str]:
        """What the CLI prints: the summary, then the worst blocks."""
        s = self.summary()
        head = (
            f"fidelity to the teacher ({self.teacher_name}) on {s['blocks_checked']} of {s['blocks_total']} blocks: "
            f"PSNR min {_db(s['psnr_min'])}, median {_db(s['psnr_median'])}; largest |student - teacher| "
            f"{s['max_abs']:.3g} (normalised units, data range 1)"
        )
        rows = [
            f"  {b.key} ({b.where()}): PSNR {_db(b.psnr)}, max |diff| {b.max_abs:.3g}, {b.chosen}"
            for b in self.worst(worst)
        ]
        return [head, *(["worst blocks:", *rows] if rows else [])]

    def to_attrs(self) -> dict[str, Any]:
        """JSON for the output's attributes (``qc``)."""
        return {**asdict(self), "units": "normalised (data range 1)", "summary": self.summary()}

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> FidelityReport:
        values = {k: v for k, v in attrs.items() if k in cls.__dataclass_fields__}
        values["blocks"] = [BlockFidelity(**b) for b in attrs.get("blocks", [])]
        return cls(**values)

    def matches(self, teacher: str, fraction: float, seed: int) -> bool:
        """Whether this report is the check asked for (same teacher, fraction and seed)."""
        return (self.teacher, self.fraction, self.seed) == (teacher, fraction, seed)

    def psnr_grid(self) -> tuple[np.ndarray, dict[str, int]]:
        """Every checked block's PSNR (dB, data range 1) on the block grid: NaN where unchecked, +inf where the two
        outputs are identical, the lowest over channels restored one by one; and the voxels per grid cell along each
        axis of ``axes`` (1 on outer axes)."""
        step = {a: self.block_shape.get(a, 1) for a in self.axes}
        grid = np.full([math.ceil(self.shape[a] / step[a]) for a in self.axes], np.nan, dtype=np.float32)
        for b in self.blocks:
            cell = tuple(
                b.position[a][0] // step[a] if isinstance(b.position[a], list) else b.position[a] for a in self.axes
            )
            psnr = math.inf if b.psnr >= MAX_PSNR else b.psnr
            grid[cell] = psnr if np.isnan(grid[cell]) else min(grid[cell], psnr)  # the worst channel shows
        return grid, step

    def heatmap(self) -> tuple[np.ndarray, dict[str, int]]:
        """The RMS student-vs-teacher difference (data range 1) on the block grid of :meth:`psnr_grid`: 0 where
        unchecked or identical."""
        grid, step = self.psnr_grid()
        with np.errstate(invalid="ignore"):
            rms = np.where(np.isfinite(grid), 10 ** (-grid / 20), 0.0).astype(np.float32)
        return rms, step


def _db(psnr: float) -> str:
    return "identical" if psnr >= MAX_PSNR else f"{psnr:.2f} dB"
