"""napari integration: the plugin's sample data opens in a real viewer with its physical scale."""

import numpy as np
import pytest

from napari_skd.samples import SAMPLES, load_sample


@pytest.mark.parametrize("name", list(SAMPLES))
def test_sample_opens_in_napari(make_napari_viewer_proxy, name):
    viewer = make_napari_viewer_proxy()
    viewer.open_sample("napari-skd", name)
    layer = viewer.layers[name]
    data, meta = load_sample(name)
    np.testing.assert_array_equal(np.asarray(layer.data), data)
    if meta["scale"] is not None:
        np.testing.assert_allclose(layer.scale, meta["scale"])


def test_writer_saves_a_layer_as_ome_zarr(make_napari_viewer_proxy, tmp_path):
    from napari_skd.io import open_image

    viewer = make_napari_viewer_proxy()
    data = np.arange(3 * 40 * 50, dtype=np.uint16).reshape(3, 40, 50)
    viewer.add_image(data, name="vol", scale=(2.0, 0.5, 0.25), translate=(1.0, 2.0, 3.0))
    written = viewer.layers.save(str(tmp_path / "vol.zarr"), selected=False, plugin="napari-skd")
    assert written == [str(tmp_path / "vol.zarr")]
    img = open_image(tmp_path / "vol.zarr")
    assert img.axes == "ZYX" and img.scale == {"Z": 2.0, "Y": 0.5, "X": 0.25}
    assert img.translation == {"Z": 1.0, "Y": 2.0, "X": 3.0}
    np.testing.assert_array_equal(np.asarray(img.data), data)
