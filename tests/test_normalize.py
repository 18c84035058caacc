"""Normalisation: one pair of percentile bounds, or one per channel along the data's channel axis."""

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from napari_skd.normalize import Normalization


def test_shared_bounds_map_low_to_0_and_high_to_1_and_back():
    n = Normalization(low=10.0, high=30.0)
    np.testing.assert_allclose(n.apply(np.array([10.0, 20.0, 30.0])), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(n.invert(np.array([0.0, 0.5, 1.0])), [10.0, 20.0, 30.0])
    assert n.channels is None and n.channel(3) == n


def test_per_channel_bounds_apply_along_the_channel_axis():
    n = Normalization(low=(0.0, 100.0), high=(10.0, 300.0))
    x = np.array([[[5.0, 10.0]], [[200.0, 100.0]]])  # (C=2, 1, 2)
    np.testing.assert_allclose(n.apply(x, channel_axis=0), [[[0.5, 1.0]], [[0.5, 0.0]]])
    np.testing.assert_allclose(n.apply(np.moveaxis(x, 0, -1), channel_axis=-1), np.moveaxis(n.apply(x, 0), 0, -1))
    np.testing.assert_allclose(n.invert(n.apply(x, 0), 0), x)
    t = torch.tensor(x, dtype=torch.float32)[None]  # (N, C, 1, 2) as the models see it
    np.testing.assert_allclose(n.apply(t, channel_axis=1).numpy()[0], n.apply(x, 0), rtol=1e-6)
    assert n.channels == 2 and n.channel(1) == Normalization(low=100.0, high=300.0)
    with pytest.raises(ValueError, match="needs the data's channel axis"):
        n.apply(x)


@pytest.mark.parametrize(
    ("low", "high"), [((0.0, 1.0), (2.0,)), ((0.0,), 5.0), ((1.0, 2.0), (3.0, 2.0)), ((), ()), (5.0, 5.0)]
)
def test_bounds_that_cannot_normalise_are_refused(low, high):
    with pytest.raises(ValidationError):
        Normalization(low=low, high=high)


def test_per_channel_bounds_survive_json():
    n = Normalization(low=(0.0, 100.0), high=(10.0, 300.0))
    assert Normalization.model_validate_json(n.model_dump_json()) == n
    assert n.bounds_text() == "low (0, 100), high (10, 300)"
