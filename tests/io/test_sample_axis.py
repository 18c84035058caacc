"""CAREamics' sample axis ``S``: read as ``T`` (each sample an image of its own), from arrays and TIFF metadata,
restored exactly like a time series; ``S`` beside ``T`` is refused with what to do."""

import json

import numpy as np
import pytest
import tifffile

from conftest import untrained
from napari_skd import restore
from napari_skd.axes import canonical_order, resolve_axes, validate_axes
from napari_skd.checkpoint import load_checkpoint, save_checkpoint
from napari_skd.errors import InputError
from napari_skd.io import open_image

STACK = np.random.default_rng(0).integers(0, 4000, (3, 24, 32), dtype=np.uint16)  # three 24 x 32 samples


def test_s_is_read_as_t_in_any_position():
    assert validate_axes("syx", 3) == "TYX"
    assert validate_axes("YXS", 3) == "YXT" and canonical_order("YXS") == (2, 0, 1)
    assert validate_axes("SCZYX", 5) == "TCZYX"
    assert resolve_axes((4, 8, 8), metadata_axes="SYX") == "TYX"


def test_s_beside_t_is_refused_with_what_to_do():
    with pytest.raises(InputError) as info:
        validate_axes("STYX", 4)
    assert "name both S (samples) and T (time)" in str(info.value)
    assert "reshape an (S, T, Y, X) array to (S*T, Y, X) and pass axes 'SYX'" in str(info.value)
    with pytest.raises(InputError, match=r"unknown letter\(s\) Q; .* and S \(samples, read as T\)"):
        validate_axes("QYX", 3)


def test_a_tiff_whose_metadata_says_syx_is_a_stack_of_samples_and_rgb_stays_channels(tmp_path):
    tifffile.imwrite(tmp_path / "samples.tif", STACK, photometric="minisblack", metadata={"axes": "SYX"})
    img = open_image(tmp_path / "samples.tif")
    assert img.axes == "TYX" and img.shape == STACK.shape
    np.testing.assert_array_equal(img.data.compute(), STACK)
    assert open_image(tmp_path / "samples.tif", axes="SYX").axes == "TYX"  # given explicitly too
    rgb = STACK.astype(np.uint8)
    tifffile.imwrite(tmp_path / "planar.tif", rgb, photometric="rgb", planarconfig="separate")  # S: colour samples
    assert open_image(tmp_path / "planar.tif").axes == "CYX"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "student.pt"
    return load_checkpoint(save_checkpoint(path, untrained("student-tiny"), role="student"))


def test_syx_arrays_and_tiffs_restore_like_a_time_series(tmp_path, checkpoint):
    as_time = restore(STACK, checkpoint, axes="TYX", device="cpu")
    as_samples = restore(STACK, checkpoint, axes="SYX", device="cpu")
    assert as_samples.shape == STACK.shape and np.array_equal(as_samples, as_time)
    one = restore(STACK[1], checkpoint, axes="YX", device="cpu")
    np.testing.assert_allclose(as_samples[1], one, atol=1e-4)  # each sample restored on its own
    tifffile.imwrite(tmp_path / "samples.tif", STACK, photometric="minisblack", metadata={"axes": "SYX"})
    out = restore(tmp_path / "samples.tif", checkpoint, tmp_path / "out.ome.zarr", device="cpu")
    axes = json.loads((out / "zarr.json").read_text())["attributes"]["ome"]["multiscales"][0]["axes"]
    assert [a["name"] for a in axes] == ["t", "y", "x"]  # written as the time axis it was read as
    np.testing.assert_allclose(open_image(out).data.compute(), as_time, atol=1e-4)
