"""The data layer: patches are a pure function of (seed, step, rank) and never read the held-out rows; the
normalisation statistics are exact for small data and refuse what cannot be normalised; degradations are seeded
and act only on spatial axes."""

import dask.array as da
import numpy as np
import pytest

from napari_skd.data.degrade import DegradationConfig, degrade
from napari_skd.data.patches import HeldOut
from napari_skd.data.sampler import PatchSampler
from napari_skd.data.stats import estimate_percentiles
from napari_skd.errors import InputError
from napari_skd.normalize import Normalization

IDENTITY = Normalization(low=0.0, high=1.0)


def volume(y: int = 96, x: int = 80, held_out_value: float | None = None, val_rows: int = 0) -> da.Array:
    """A (S, C, Z, Y, X) volume of values in [0, 1); its last ``val_rows`` rows set to ``held_out_value``."""
    v = np.random.default_rng(1).random((1, 1, 1, y, x), dtype=np.float32)
    if held_out_value is not None:
        v[..., y - val_rows :, :] = held_out_value
    return da.from_array(v)


def sampler(clean: list, **kwargs) -> PatchSampler:
    options = {"spatial_dims": 2, "patch_size": 16, "degradation": DegradationConfig(sigma=0.1)} | kwargs
    return PatchSampler(None, clean, IDENTITY, **options)


def test_a_batch_is_a_pure_function_of_seed_step_and_rank():
    a, b = sampler([volume()]), sampler([volume()])
    first, again = a.batch(5, 4), b.batch(5, 4)
    assert np.array_equal(first.input, again.input) and np.array_equal(first.target, again.target)
    assert not np.array_equal(first.input, a.batch(5, 4, rank=1).input)
    assert not np.array_equal(first.input, a.batch(6, 4).input)
    assert not np.array_equal(first.input, sampler([volume()], seed=1).batch(5, 4).input)


def test_training_patches_never_read_the_validation_rows():
    # 10 % of 96 rows is 10, raised to one patch (16 rows): those rows hold 100, every other pixel is below 1
    s = sampler([volume(held_out_value=100.0, val_rows=16)], val_fraction=0.1, augment=False)
    assert s.plan.held_out == (HeldOut("Y", 16),)
    for step in range(50):
        assert float(s.batch(step, 8).target.max()) < 1.0
    assert float(s.validation.target.min()) == 100.0  # the validation set comes from those rows only


def test_percentiles_are_exact_for_small_data_and_sampled_for_large():
    values = np.random.default_rng(0).gamma(2.0, 10.0, (64, 64)).astype(np.float32)
    norm = estimate_percentiles([da.from_array(values)], pmin=2.0, pmax=98.0)
    assert (norm.low, norm.high) == pytest.approx(tuple(np.percentile(values.astype(np.float64), (2.0, 98.0))))
    big = da.from_array(values, chunks=16)
    sampled = estimate_percentiles([big], pmin=2.0, pmax=98.0, max_samples=1024)
    assert sampled.low == pytest.approx(norm.low, rel=0.5) and sampled.high == pytest.approx(norm.high, rel=0.2)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (np.array([[1.0, np.nan], [2.0, 3.0]], np.float32), "NaN or Inf"),
        (np.full((8, 8), 7.0, np.float32), "constant between"),
        (np.zeros((0, 8), np.float32), "empty"),
    ],
)
def test_percentiles_refuse_data_that_cannot_be_normalised(data, message):
    with pytest.raises(InputError, match=message):
        estimate_percentiles([da.from_array(data)])


@pytest.mark.parametrize("kind", ["gaussian", "poisson_gaussian", "rician", "blur_noise"])
def test_degradations_are_seeded(kind):
    clean = np.random.default_rng(2).random((2, 32, 32)).astype(np.float32)
    cfg = DegradationConfig(kind=kind, sigma=0.1)
    first = degrade(clean, cfg, np.random.default_rng(7))
    assert first.dtype == np.float32 and first.shape == clean.shape
    assert np.array_equal(first, degrade(clean, cfg, np.random.default_rng(7)))
    assert not np.array_equal(first, degrade(clean, cfg, np.random.default_rng(8)))


def test_gaussian_noise_has_the_requested_sigma_and_blur_stays_within_a_channel():
    clean = np.zeros((256, 256), np.float32)
    noise = degrade(clean, DegradationConfig(kind="gaussian", sigma=0.2), np.random.default_rng(0))
    assert float(noise.std()) == pytest.approx(0.2, rel=0.02) and abs(float(noise.mean())) < 0.005
    two = np.stack([np.zeros((32, 32)), np.ones((32, 32))]).astype(np.float32)  # channel axis first, then Y, X
    blurred = degrade(two, DegradationConfig(kind="blur_noise", sigma=0.0, blur_sigma=2.0), np.random.default_rng(0))
    assert np.allclose(blurred[0], 0.0) and np.allclose(blurred[1], 1.0)  # no mixing across the channel axis


def test_percentiles_per_channel_when_the_data_has_several():
    rng = np.random.default_rng(3)
    two = np.stack([rng.random((1, 1, 32, 32)), 1000 + 50 * rng.random((1, 1, 32, 32))], axis=1)[:, :, 0]
    norm = estimate_percentiles([da.from_array(two)], pmin=1.0, pmax=99.0, channel_axis=1)
    for c in range(2):
        expected = np.percentile(two[:, c], (1.0, 99.0))
        assert (norm.low[c], norm.high[c]) == pytest.approx(tuple(expected))
    assert estimate_percentiles([da.from_array(two[:, :1])], channel_axis=1).channels is None  # one channel: shared
