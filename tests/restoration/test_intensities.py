"""The intensity check: an input whose percentiles, mapped through the checkpoint's normalisation, span far from
[0, 1] is refused; ``renormalize`` restores it with its own percentiles; ``as-is`` skips the check."""

import numpy as np
import pytest

from conftest import untrained
from napari_skd import restore
from napari_skd.checkpoint import load_checkpoint, save_checkpoint
from napari_skd.errors import InputError
from napari_skd.normalize import Normalization
from napari_skd.restoration.intensities import OFFSET, SPAN, far_apart

TRAINED = Normalization(low=100.0, high=300.0)  # the training data's 1st and 99.8th percentiles
GRID = dict(tile=16, overlap=4, chunks=16)


@pytest.mark.parametrize(
    ("low", "high", "dtype", "far"),
    [
        (100.0, 300.0, None, False),  # the same range: normalised span [0, 1]
        (150.0, 500.0, None, False),  # brighter and wider: [0.25, 2], span 1.75, centre 1.125
        (120.0, 125.0, None, False),  # a crop of flat background: a narrow span alone is fine
        (200.0 - 100.0 * SPAN * 0.99, 200.0 + 100.0 * SPAN * 0.99, None, False),  # centred, just under 5 x wider
        (200.0 - 100.0 * SPAN * 1.01, 200.0 + 100.0 * SPAN * 1.01, None, True),  # centred, just over
        (-1024.0, 1800.0, None, True),  # CT in Hounsfield units: [-5.62, 8.5]
        (100.0 + 200.0 * (OFFSET + 0.1), 300.0 + 200.0 * (OFFSET + 0.1), None, True),  # shifted by over 1.5 ranges
        (100.0 + 200.0 * (OFFSET - 0.1), 300.0 + 200.0 * (OFFSET - 0.1), None, False),  # by a little less
        (120.0, 125.0, "uint8", False),  # 8-bit data can hold 255 / 200 of this training range
    ],
)
def test_far_apart_by_span_centre_and_dtype(low, high, dtype, far):
    assert far_apart(Normalization(low=low, high=high), TRAINED, dtype) is far


def test_an_integer_type_too_small_for_the_training_range_is_far():
    sixteen_bit = Normalization(low=100.0, high=4000.0)  # 255 / 3900 = 0.065 of the range: under 1 / 5
    assert far_apart(Normalization(low=20.0, high=240.0), sixteen_bit, "uint8")
    assert not far_apart(Normalization(low=20.0, high=240.0), sixteen_bit, "uint16")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "m.pt", untrained("unet-xs"), norm=TRAINED)


def test_renormalize_uses_the_input_percentiles_and_as_is_the_checkpoint(ckpt, tmp_path):
    rng = np.random.default_rng(0)
    image = (rng.random((48, 48)) * 3000 - 1000).astype(np.float32)  # CT-like: far from 100..300
    with pytest.raises(InputError, match="far from those the model was trained on"):
        restore(image, ckpt, **GRID)
    own = np.percentile(image.astype(np.float64), (TRAINED.pmin, TRAINED.pmax))
    same = save_checkpoint(tmp_path / "own.pt", untrained("unet-xs"), norm=Normalization(low=own[0], high=own[1]))
    # the same weights with the input's own percentiles as normalisation: what renormalize must give
    model = load_checkpoint(ckpt).model
    same_weights = save_checkpoint(tmp_path / "w.pt", model, norm=Normalization(low=own[0], high=own[1]))
    renormalized = restore(image, ckpt, intensities="renormalize", **GRID)
    np.testing.assert_allclose(renormalized, restore(image, same_weights, **GRID), rtol=1e-5, atol=1e-3)
    assert not np.allclose(renormalized, restore(image, same, **GRID))  # other weights differ: the test can fail
    as_is = restore(image, ckpt, intensities="as-is", **GRID)
    assert not np.allclose(as_is, renormalized)


def test_a_one_channel_model_on_several_channels_says_so(ckpt):
    image = (np.random.default_rng(1).random((2, 32, 32)) * 200 + 100).astype(np.float32)
    said = []
    restore(image, ckpt, axes="CYX", progress=lambda e: said.append(e.message), **GRID)
    assert any("each of the 2 channels restored on its own" in m for m in said)
