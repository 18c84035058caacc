"""Patch shapes and validation regions fitted to small images: thin stacks get shallow 3D patches, small images a
validation region along Z or the samples, or a smaller patch when the size was left unset; sizes given are kept,
and what cannot fit is refused with a message."""

import dask.array as da
import numpy as np
import pytest

from napari_skd.data.degrade import DegradationConfig
from napari_skd.data.patches import HeldOut, plan_patches
from napari_skd.data.sampler import PatchSampler
from napari_skd.errors import InputError
from napari_skd.normalize import Normalization

IDENTITY = Normalization(low=0.0, high=1.0)


def plan(shape: tuple[int, ...], patch_size, dims: int = 2, **kwargs):
    return plan_patches([shape], patch_size, spatial_dims=dims, multiple=8, **kwargs)


def test_a_3d_patch_given_as_one_side_shrinks_along_z_to_a_thin_stack():
    p = plan((1, 1, 8, 64, 64), 16, dims=3)
    assert p.patch == (8, 16, 16) and p.sides == (8, 16, 16) and p.held_out == (HeldOut("Y", 16),)
    assert p.notes == ("patches of 8 x 16 x 16 (Z, Y, X) instead of 16, to fit the image (8 x 64 x 64 in Z, Y, X)",)
    assert plan((1, 1, 20, 64, 64), 16, dims=3).patch == (16, 16, 16)  # deep enough: a cube, nothing said
    assert plan((1, 1, 20, 64, 64), 16, dims=3).notes == ()
    assert plan((1, 1, 20, 64, 64), 32, dims=3, val_fraction=0).patch == (16, 32, 32)  # a multiple of 8


def test_sides_given_one_per_axis_are_kept_or_refused():
    assert plan((1, 1, 32, 64, 64), (8, 32, 16), dims=3).sides == (8, 32, 16)
    assert plan((1, 1, 1, 64, 64), [16, 32]).patch == (1, 16, 32)
    for shape, size, dims, message in [
        ((1, 1, 8, 64, 64), (16, 16, 16), 3, "patch size 16 is larger than the image depth Z=8; .* give one side"),
        ((1, 1, 4, 64, 64), 16, 3, "only 4 slice.* need at least 8 .* train a 2D model"),
        ((1, 1, 1, 64, 64), (8, 16, 16), 2, r"patch_size \(8, 16, 16\) has 3 sides but the model is 2D"),
        ((1, 1, 1, 64, 64), 60, 2, "patch_size 60 must be a multiple of 8 .* e.g. 56"),
        ((1, 1, 1, 16, 16), 64, 2, r"patch size 64 is larger than the image \(16 x 16 in Y, X\); .* leave it unset"),
    ]:
        with pytest.raises(InputError, match=message):
            plan(shape, size, dims)


def test_a_default_patch_shrinks_to_small_images_and_their_validation_region():
    p = plan((1, 1, 1, 58, 58), 64, fit=True)  # 58 rows: a validation patch and a training patch of 24 each
    assert p.patch == (1, 24, 24) and p.held_out == (HeldOut("Y", 24),)
    assert p.notes == ("patches of 24 x 24 (Y, X) instead of 64, to fit the image (58 x 58 in Y, X) with a "
                       "validation region",)  # fmt: skip
    with pytest.raises(InputError, match=r"1 x 1 pixels \(Y, X\) is smaller than the smallest training patch, 8 x 8"):
        plan((1, 1, 1, 1, 1), 64, fit=True)
    small = plan_patches([(1, 1, 1, 96, 96)], 64, spatial_dims=2, multiple=8, fit=True, unvalidated=[(1, 1, 1, 40, 40)])
    assert small.patch == (1, 40, 40) and small.held_out == (HeldOut("Y", 40),)


def test_volumes_too_small_for_validation_rows_hold_out_z_slices_or_samples():
    p = plan((1, 1, 24, 58, 58), 64, fit=True)  # a 2D model on a small volume: whole slices for validation
    assert p.patch == (1, 56, 56) and p.held_out == (HeldOut("Z", 3),)
    assert p.notes[1] == ("validation holds out the last 3 of 24 Z slices: its 58 rows cannot hold both a validation "
                          "region and training patches")  # fmt: skip
    three = plan((1, 1, 24, 58, 58), 64, dims=3, fit=True)  # the largest patch leaving 8 slices for validation
    assert three.patch == (8, 56, 56) and three.held_out == (HeldOut("Z", 8),)
    samples = plan((5, 1, 1, 32, 32), 32)
    assert samples.held_out == (HeldOut("S", 1),) and "last 1 of 5 samples (T)" in samples.notes[0]
    assert plan((1, 1, 24, 58, 58), 32, val_fraction=0).held_out == (None,)


def test_what_cannot_hold_a_validation_region_is_refused_with_what_to_do():
    with pytest.raises(InputError) as info:
        plan((1, 1, 1, 58, 58), 32)  # a size given: kept, and 58 rows hold only one 32-row patch
    assert str(info.value) == (
        "image 0 (58 x 58 in Y, X) cannot hold a validation region (the last 10% of its rows, Z slices or samples, "
        "at least one patch) and training patches of 32; lower val_fraction or patch_size, or set val_fraction to 0 "
        "(no validation)"
    )


def held_out_volume(shape: tuple[int, ...], axis: int, count: int) -> da.Array:
    """Values in [0, 1), except 100 in the last ``count`` indices along ``axis`` of the (S, C, Z, Y, X) shape."""
    v = np.random.default_rng(1).random(shape, dtype=np.float32)
    index = [slice(None)] * 5
    index[axis] = slice(shape[axis] - count, None)
    v[tuple(index)] = 100.0
    return da.from_array(v)


@pytest.mark.parametrize(
    ("shape", "dims", "patch", "axis", "count"),
    [
        ((1, 1, 24, 58, 58), 2, 32, 2, 3),  # 2D model: the last 3 slices
        ((1, 1, 24, 58, 58), 3, 32, 2, 8),  # 3D model: the last 8 slices, patches 8 deep
        ((6, 1, 1, 40, 40), 2, 32, 0, 1),  # a stack of samples: the last sample
    ],
)
def test_training_patches_never_read_held_out_slices_or_samples(shape, dims, patch, axis, count):
    s = PatchSampler(None, [held_out_volume(shape, axis, count)], IDENTITY, spatial_dims=dims, patch_size=patch,
                     multiple=8, degradation=DegradationConfig(sigma=0.1), augment=False)  # fmt: skip
    assert s.plan.held_out[0].dim == axis and s.plan.held_out[0].count == count
    for step in range(30):
        batch = s.batch(step, 4)
        assert batch.target.shape[2:] == s.plan.sides and float(batch.target.max()) < 1.0
    assert float(s.validation.target.min()) == 100.0  # the validation set comes from the held-out part only


def test_a_patch_that_is_not_square_is_only_turned_by_half_turns():
    image = da.from_array(np.random.default_rng(0).random((1, 1, 1, 64, 64), dtype=np.float32))
    s = PatchSampler(None, [image], IDENTITY, spatial_dims=2, patch_size=(16, 32), degradation=DegradationConfig())
    for step in range(20):
        assert tuple(s.batch(step, 3).input.shape) == (3, 1, 16, 32)
