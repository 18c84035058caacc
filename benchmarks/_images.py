"""Sample images as the quality benchmarks use them: scaled to [0, 1] by their 1 and 99.8 percentiles."""

from __future__ import annotations

import numpy as np

from napari_skd.samples import load_sample


def unit_sample(name: str, slab: slice) -> np.ndarray:
    """The sample ``name`` in [0, 1] (1-99.8 percentiles): YX, or the ZYX slices ``slab`` of a volume."""
    image, _ = load_sample(name)
    image = image.astype(np.float32)
    if image.ndim == 3:
        image = image[slab]
    lo, hi = np.percentile(image, (1, 99.8))
    return ((image - lo) / (hi - lo)).astype(np.float32)
