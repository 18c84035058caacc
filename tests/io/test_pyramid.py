"""Resolution pyramids: the automatic level count, chunks per level, and levels kept in step with level 0 block by
block, in any order, equal to a pyramid built once at the end."""

import random

import numpy as np
import pytest
import zarr

from napari_skd.io.pyramid import auto_levels, level_chunks, mean_pool, update_pyramid
from napari_skd.io.writers import build_pyramid, create_ome_zarr, pyramid_arrays


@pytest.mark.parametrize(
    ("shape", "axes", "levels"),
    [
        ((1024, 1024), "YX", 0),  # fits already
        ((1025, 10), "YX", 1),  # 1025 // 2 = 512
        ((4096, 4096), "YX", 2),  # 4096 -> 2048 -> 1024
        ((4097, 300), "YX", 2),  # 4097 -> 2048 -> 1024 (rounded down, as the levels are)
        ((5000, 64, 64), "ZYX", 0),  # Z is never downsampled
        ((2, 70000, 900), "CYX", 7),  # 70000 / 128 = 546.9
    ],
)
def test_auto_levels_until_the_smallest_level_fits_1024_px(shape, axes, levels):
    assert auto_levels(shape, axes) == levels


def test_level_chunks_follow_the_block_footprint_but_not_below_256():
    assert level_chunks((1, 2048, 2048), (5, 4096, 4096), "ZYX", 1) == (1, 1024, 1024)
    assert level_chunks((1, 2048, 2048), (5, 256, 300), "ZYX", 4) == (1, 256, 256)
    assert level_chunks((1, 100, 2048), (5, 50, 1024), "ZYX", 1) == (1, 50, 1024)  # capped to the level's size
    assert level_chunks((1, 128, 128), (5, 64, 64), "ZYX", 3) == (1, 64, 64)


def test_mean_pool_by_hand():
    x = np.array([[1, 2, 3, 5], [3, 4, 4, 4]], np.uint16)
    assert mean_pool(x, [True, True], np.uint16).tolist() == [[2, 4]]  # 10/4 = 2.5 rounds to even 2; 16/4 = 4
    assert mean_pool(x.astype(np.float32), [False, True], np.float32).tolist() == [[1.5, 4.0], [3.5, 4.0]]


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_levels_updated_block_by_block_in_any_order_equal_the_pyramid_built_at_the_end(tmp_path, dtype):
    rng = np.random.default_rng(0)
    x = (rng.random((2, 301, 517)) * 60000).astype(dtype)
    chunks = (1, 100, 90)  # blocks not aligned with the 2x windows of any level
    live = create_ome_zarr(tmp_path / "live.zarr", shape=x.shape, dtype=dtype, chunks=chunks, axes="ZYX", levels=3)
    arrays = pyramid_arrays(zarr.open_group(str(tmp_path / "live.zarr"), mode="r+"))
    assert [a.shape for a in arrays] == [(2, 301, 517), (2, 150, 258), (2, 75, 129), (2, 37, 64)]
    blocks = [
        (z, slice(y, min(y + 100, 301)), slice(v, min(v + 90, 517)))
        for z in range(2)
        for y in range(0, 301, 100)
        for v in range(0, 517, 90)
    ]
    random.Random(1).shuffle(blocks)
    for i, block in enumerate(blocks):
        live[block] = x[block]
        update_pyramid(arrays, "ZYX", block)
        if i == 0:  # after one block, level 1 over that block is already its mean; elsewhere still empty
            z, ys, xs = block
            inner = (z, slice(-(-ys.start // 2), ys.stop // 2), slice(-(-xs.start // 2), xs.stop // 2))
            window = (z, slice(2 * inner[1].start, 2 * inner[1].stop), slice(2 * inner[2].start, 2 * inner[2].stop))
            np.testing.assert_array_equal(arrays[1][inner], mean_pool(x[window], [True, True], dtype))
            assert arrays[1][1 - z].max() == 0
    whole = create_ome_zarr(tmp_path / "end.zarr", shape=x.shape, dtype=dtype, chunks=chunks, axes="ZYX")
    whole[...] = x
    assert build_pyramid(tmp_path / "end.zarr", 3) == 3
    reference = pyramid_arrays(zarr.open_group(str(tmp_path / "end.zarr")))
    for k in range(4):
        np.testing.assert_array_equal(arrays[k][...], reference[k][...])
    by_hand = x[:, :300, :516].astype(np.float64).reshape(2, 150, 2, 258, 2).mean(axis=(2, 4))
    if dtype == "uint16":
        by_hand = np.rint(by_hand)
    np.testing.assert_allclose(reference[1][...], by_hand, rtol=1e-6)


def test_convert_writes_the_auto_pyramid_and_refuses_bad_levels_before_touching_the_output(tmp_path):
    from napari_skd.errors import InputError
    from napari_skd.io.convert import to_ome_zarr

    x = np.arange(40 * 1100, dtype=np.uint16).reshape(40, 1100)
    out = to_ome_zarr(x, tmp_path / "x.ome.zarr", axes="YX")
    arrays = pyramid_arrays(zarr.open_group(str(out), mode="r"))
    assert [a.shape for a in arrays] == [(40, 1100), (20, 550)]
    np.testing.assert_array_equal(arrays[1][...], mean_pool(x, [True, True], np.uint16))
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(InputError, match="pyramid_levels must be 'auto' or a whole number"):
        to_ome_zarr(x, out, axes="YX", overwrite=True, pyramid_levels="many")
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # the old output is untouched
    flat = to_ome_zarr(x, tmp_path / "flat.ome.zarr", axes="YX", pyramid_levels=0)
    assert len(pyramid_arrays(zarr.open_group(str(flat), mode="r"))) == 1
