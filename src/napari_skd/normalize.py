"""Intensity normalisation: dataset-wide percentile statistics, stored in checkpoints and reused at inference."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

#: One bound for every channel, or one per channel (channel order of the data).
Bound = float | tuple[float, ...]


class Normalization(BaseModel):
    """Affine map ``(x - low) / (high - low)`` from data units to model units, and back.

    ``low`` and ``high`` are the ``pmin`` / ``pmax`` percentiles of the training data, computed once per dataset: one
    pair for all channels, or one pair per channel (tuples). Per-channel bounds need the data's channel axis
    (``channel_axis`` of :meth:`apply` and :meth:`invert`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["percentile"] = "percentile"
    pmin: float = Field(1.0, ge=0, le=100)
    pmax: float = Field(99.8, ge=0, le=100)
    low: Bound
    high: Bound

    @model_validator(mode="after")
    def _check(self) -> Normalization:
        low, high = np.atleast_1d(self.low), np.atleast_1d(self.high)
        if isinstance(self.low, tuple) != isinstance(self.high, tuple) or low.shape != high.shape or not low.size:
            raise ValueError(f"low and high must both be numbers or both one per channel, got {self.low}, {self.high}")
        if not (np.isfinite(low).all() and np.isfinite(high).all()) or (high <= low).any():
            raise ValueError(
                f"normalisation needs finite low < high, got low={self.low}, high={self.high}; "
                "the data may be constant or contain NaN/Inf"
            )
        return self

    @property
    def channels(self) -> int | None:
        """How many channels have their own bounds (None: one pair for all)."""
        return len(self.low) if isinstance(self.low, tuple) else None

    def channel(self, c: int) -> Normalization:
        """The bounds of channel ``c`` alone (the same bounds when they are shared)."""
        if self.channels is None:
            return self
        return self.model_copy(update={"low": float(self.low[c]), "high": float(self.high[c])})

    def apply(self, x: Any, channel_axis: int | None = None) -> Any:
        """Data units -> model units (numpy arrays, torch tensors and numbers)."""
        low, high = self._bounds(x, channel_axis)
        return (x - low) / (high - low)

    def invert(self, y: Any, channel_axis: int | None = None) -> Any:
        """Model units -> data units."""
        low, high = self._bounds(y, channel_axis)
        return y * (high - low) + low

    def _bounds(self, x: Any, channel_axis: int | None) -> tuple[Any, Any]:
        if self.channels is None or self.channels == 1:
            return self._first(self.low), self._first(self.high)
        if channel_axis is None:
            raise ValueError("per-channel normalisation needs the data's channel axis (channel_axis)")
        ndim = np.ndim(x)
        shape = [1] * ndim
        shape[channel_axis] = self.channels
        low, high = np.reshape(self.low, shape), np.reshape(self.high, shape)
        if hasattr(x, "new_tensor"):  # torch
            return x.new_tensor(low), x.new_tensor(high)
        return low.astype(np.float64), high.astype(np.float64)

    def bounds_text(self, digits: int = 4) -> str:
        """``low 12.5, high 3400`` (one value per channel when the bounds are per channel)."""

        def fmt(b: Bound) -> str:
            return ", ".join(f"{v:.{digits}g}" for v in b).join("()") if isinstance(b, tuple) else f"{b:.{digits}g}"

        return f"low {fmt(self.low)}, high {fmt(self.high)}"

    @staticmethod
    def _first(bound: Bound) -> float:
        return float(bound[0]) if isinstance(bound, tuple) else bound
