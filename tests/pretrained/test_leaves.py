"""The dead-leaves generator: seeded, in range, with the size law and the intensity styles it promises."""

import numpy as np
import pytest

from napari_skd.pretrained.leaves import STYLES, dead_leaves, power_law_radii


@pytest.mark.parametrize("style", STYLES)
def test_images_are_a_pure_function_of_the_seed(style):
    a, b, c = dead_leaves(5, 96, style), dead_leaves(5, 96, style), dead_leaves(6, 96, style)
    assert a.dtype == np.float32 and a.shape == (96, 96)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() >= 0 and a.max() <= 1 and a.std() > 0.02


def test_radii_follow_the_power_law():
    # density r**-3 on [1, 100]: P(r <= 2) = (1 - 2**-2) / (1 - 100**-2) = 0.750075 (inverse-CDF sampling)
    r = power_law_radii(np.random.default_rng(0), 200_000, 1.0, 100.0, alpha=3.0)
    assert r.min() >= 1 and r.max() <= 100
    assert abs(np.mean(r <= 2) - 0.750075) < 0.004
    assert abs(np.mean(r <= 10) - (1 - 10**-2) / (1 - 100**-2)) < 0.002


def test_styles_have_the_intensity_statistics_of_their_images():
    fluo = np.stack([dead_leaves(s, 128, "fluorescence") for s in range(12)])
    med = np.stack([dead_leaves(s, 128, "medical") for s in range(12)])
    # fluorescence: a dark background with sparse bright objects
    assert np.median(np.median(fluo, axis=(1, 2))) < 0.25 and np.median(fluo.max(axis=(1, 2))) > 0.9
    # medical: a body on a dark outside (the corners)
    corners = med[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert np.median(corners) < 0.05 and np.median(med[:, 48:80, 48:80]) > 0.1
