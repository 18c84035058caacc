"""napari integration: the plugin's sample data opens in a real viewer with its physical scale."""

import numpy as np
import pytest

from napari_skd.samples import SAMPLES, load_sample


@pytest.mark.parametrize("name", list(SAMPLES))
def test_sample_opens_in_napari(make_napari_viewer, name):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-skd", name)
    layer = viewer.layers[name]
    data, meta = load_sample(name)
    np.testing.assert_array_equal(np.asarray(layer.data), data)
    if meta["scale"] is not None:
        np.testing.assert_allclose(layer.scale, meta["scale"])
