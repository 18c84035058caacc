"""The tiling plan, the blending window and the axes layout: pure functions, checked on many shapes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_skd.errors import InputError
from napari_skd.restoration.blend import FLOOR, Blender, profile, window
from napari_skd.restoration.layout import make_layout, output_blocks
from napari_skd.restoration.plan import batches, plan_blocks, snap_up, tile_length

M = 8  # the models' multiple


@st.composite
def plans(draw):
    d = draw(st.sampled_from([2, 3]))
    top = 90 if d == 2 else 32
    shape = tuple(draw(st.integers(1, top)) for _ in range(d))
    chunks = tuple(draw(st.integers(min(n, 3), n + 8)) for n in shape)  # at most ~1000 blocks: the test stays fast
    tile = tuple(draw(st.integers(M, 64)) for _ in range(d))
    overlap = draw(st.integers(0, min(snap_up(t, M) for t in tile) - 1))
    halo = overlap + draw(st.integers(0, 6))
    return shape, chunks, tile, overlap, halo


@settings(max_examples=100, deadline=None)
@given(plans())
def test_blocks_partition_the_image_and_tiles_cover_each_padded_region(case):
    shape, chunks, tile, overlap, halo = case
    blocks = plan_blocks(shape, chunks, tile, overlap, halo, M)
    count = np.zeros(shape, dtype=np.int32)
    for b in blocks:
        count[b.out] += 1
        for s, c, n in zip(b.out, chunks, shape, strict=True):  # one block = one output chunk
            assert s.start % c == 0 and s.stop == min(s.start + c, n)
        padded = b.padded_shape
        for s, r, (before, after), crop, p, n in zip(b.out, b.read, b.pad, b.crop, padded, shape, strict=True):
            assert 0 <= r.start < r.stop <= n  # the read region lies in the image ...
            assert r.start - before == s.start - halo  # ... and the padding completes out + halo on both sides
            assert p >= s.stop - s.start + 2 * halo and (before == 0 or r.start == 0) and (after == 0 or r.stop == n)
            assert crop.start == halo and crop.stop - crop.start == s.stop - s.start
        cover = np.zeros(padded, dtype=np.int32)
        for t in b.tiles():
            assert all(s.start >= 0 and s.stop <= p for s, p in zip(t, padded, strict=True))  # inside the padded image
            cover[t] += 1
        assert cover.min() >= 1  # tiles cover the block's whole padded region
        for t, top, starts, p in zip(b.tile, tile, b.tile_starts, padded, strict=True):
            assert t % M == 0 and t <= snap_up(top, M)
            k = len(starts)
            assert t == M or k * (t - M) - (k - 1) * overlap < p  # a smaller tile would need more tiles
            assert all(
                b2 - a2 <= t - overlap for a2, b2 in zip(starts[:-1], starts[1:], strict=True)
            )  # neighbours overlap enough
    assert count.min() == 1 and count.max() == 1  # every output voxel is written exactly once


def test_tile_is_snapped_and_never_larger_than_needed():
    assert tile_length(40, 512, 16, 8) == 40  # one tile, the region's size
    assert tile_length(41, 512, 16, 8) == 48  # snapped up to the multiple
    assert tile_length(1088, 512, 32, 8) == 384  # 3 tiles of 384 (3 * 384 - 2 * 32 = 1088) instead of 3 of 512
    assert tile_length(100, 60, 16, 8) == 64  # the cap is snapped up too
    with pytest.raises(ValueError, match="exceed the overlap"):
        tile_length(100, 16, 16, 8)


def test_small_image_gets_one_block_and_one_tile_per_axis():
    (block,) = plan_blocks((48, 50), (64, 64), (512, 512), 16)
    assert block.shape == (48, 50) and block.pad == ((16, 16), (16, 22)) and block.tile == (80, 88)
    assert block.tiles() == [(slice(0, 80), slice(0, 88))]


def test_batches_keep_order():
    assert batches(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]


# ---------------------------------------------------------------- blending


@pytest.mark.parametrize("kind", ["cosine", "gaussian"])
def test_window_is_smooth_positive_and_peaks_at_one(kind):
    w = profile(64, 16, kind)
    assert w.min() >= FLOOR and w.max() == pytest.approx(1.0, abs=5e-3)
    assert np.abs(np.diff(w)).max() < 0.15  # no jumps
    assert window((8, 64, 64), 16, kind).shape == (8, 64, 64)


def test_cosine_ramps_cross_fade_to_one():
    w = profile(64, 16)
    assert np.allclose(w[-16:] + w[:16], 1.0, atol=1e-6)  # two tiles overlapping by `overlap` sum to 1


def test_blender_normalises_and_gives_every_voxel_weight():
    blender = Blender(1, (40,), overlap=8)
    for start in (0, 16, 24):
        blender.add((slice(start, start + 16),), np.full((1, 16), 3.0, np.float32))
    assert np.allclose(blender.result(), 3.0)
    assert (blender.weight > 0).all()


# ---------------------------------------------------------------- layout


def test_layout_2d_model_runs_slice_wise_and_3d_model_sees_z():
    two = make_layout("TZYX", (2, 5, 64, 64), 1, 1, 2)
    assert two.spatial == "YX" and two.outer == "TZ" and len(two.outer_positions()) == 10
    assert two.out_chunks((32, 32)) == (1, 1, 32, 32)
    three = make_layout("TZYX", (2, 5, 64, 64), 1, 1, 3)
    assert three.spatial == "ZYX" and three.outer == "T" and three.out_chunks((5, 32, 32)) == (1, 5, 32, 32)
    blocks = plan_blocks((64, 64), (32, 32), (32, 32), 8)
    keys = [b.key for b in output_blocks(two, blocks)]
    assert len(keys) == len(set(keys)) == 40 and keys[0] == "0.0/0.0"


def test_layout_channels_map_to_the_model_or_run_one_by_one():
    fed = make_layout("CYX", (3, 64, 64), 3, 3, 2)
    assert fed.channels_to_model and fed.outer == "" and fed.out_chunks((64, 64)) == (3, 64, 64)
    single = make_layout("CYX", (3, 64, 64), 1, 1, 2)
    assert not single.channels_to_model and single.outer == "C" and single.out_shape == (3, 64, 64)


@pytest.mark.parametrize(
    ("axes", "shape", "cin", "cout", "dims", "expected"),
    [
        ("CYX", (3, 64, 64), 2, 2, 2, "has 3 channels (axis C) but the model expects 2 input channels"),
        ("YX", (64, 64), 3, 3, 2, "has no C axis (1 channel) but the model expects 3"),
        ("CYX", (3, 64, 64), 1, 2, 2, "cannot run channel by channel"),
        ("CYX", (2, 64, 64), 2, 2, 3, "model is 3D but the image (axes 'CYX') has no Z axis"),
    ],
)
def test_layout_refuses_what_does_not_fit(axes, shape, cin, cout, dims, expected):
    with pytest.raises(InputError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        make_layout(axes, shape, cin, cout, dims)
