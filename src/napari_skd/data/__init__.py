"""Training data: volumes in canonical layout, dataset-wide normalisation, degradations, patch sampling."""

from .degrade import DegradationConfig, degrade
from .sampler import PatchSampler
from .stats import estimate_percentiles

__all__ = ["DegradationConfig", "PatchSampler", "degrade", "estimate_percentiles"]
