"""Intensity normalisation: dataset-wide percentile statistics, stored in checkpoints and reused at inference."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class Normalization(BaseModel):
    """Affine map ``(x - low) / (high - low)`` from data units to model units, and back.

    ``low`` and ``high`` are the ``pmin`` / ``pmax`` percentiles of the training data, computed once per dataset.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["percentile"] = "percentile"
    pmin: float = Field(1.0, ge=0, le=100)
    pmax: float = Field(99.8, ge=0, le=100)
    low: float
    high: float

    @model_validator(mode="after")
    def _check(self) -> Normalization:
        if not (np.isfinite(self.low) and np.isfinite(self.high)) or self.high <= self.low:
            raise ValueError(
                f"normalisation needs finite low < high, got low={self.low}, high={self.high}; "
                "the data may be constant or contain NaN/Inf"
            )
        return self

    def apply(self, x):
        """Data units -> model units (works on numpy arrays and torch tensors)."""
        return (x - self.low) / (self.high - self.low)

    def invert(self, y):
        """Model units -> data units."""
        return y * (self.high - self.low) + self.low
