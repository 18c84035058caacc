"""Pyramids of restored OME-Zarr outputs: added by default when the image is large, filled in as blocks finish
(a stopped run already shows the finished blocks when zoomed out), equal to a pyramid built at the end."""

import shutil
import threading

import numpy as np
import pytest
import torch
import zarr

from conftest import file_digest, untrained
from napari_skd import restore
from napari_skd.checkpoint import save_checkpoint
from napari_skd.errors import InputError
from napari_skd.io.pyramid import mean_pool
from napari_skd.io.writers import build_pyramid, pyramid_arrays
from napari_skd.normalize import Normalization
from napari_skd.samples import load_sample

NUCLEI, _ = load_sample("nuclei2d")
WIDE = np.tile(NUCLEI[:48], (1, 3))[:, :1100]  # 48 x 1100: one side over 1024 px, so "auto" adds one level
GRID = dict(tile=48, overlap=16, chunks=64)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    norm = Normalization(low=0.0, high=float(NUCLEI.max()))
    return str(save_checkpoint(tmp_path_factory.mktemp("ck") / "unet.pt", untrained("unet-xs"), norm=norm))


@pytest.fixture(scope="module")
def reference(ckpt, tmp_path_factory):
    return restore(WIDE, ckpt, tmp_path_factory.mktemp("ref") / "ref.zarr", **GRID)


def levels(path) -> list:
    return pyramid_arrays(zarr.open_group(str(path), mode="r"))


def test_a_large_output_gets_levels_by_default_and_a_small_one_none(ckpt, reference, tmp_path):
    shapes = [a.shape for a in levels(reference)]
    assert shapes == [(48, 1100), (24, 550)]  # 1100 > 1024 px: one 2x level
    level0 = levels(reference)[0][...]
    np.testing.assert_array_equal(levels(reference)[1][...], mean_pool(level0, [True, True], np.float32))
    small = restore(WIDE[:, :1024], ckpt, tmp_path / "small.zarr", **GRID)
    assert [a.shape for a in levels(small)] == [(48, 1024)]
    none = restore(WIDE, ckpt, tmp_path / "none.zarr", pyramid_levels=0, **GRID)
    assert len(levels(none)) == 1
    three = restore(WIDE, ckpt, tmp_path / "three.zarr", pyramid_levels="3", **GRID)  # an explicit number wins
    assert [a.shape for a in levels(three)] == [(48, 1100), (24, 550), (12, 275), (6, 137)]


def test_a_stopped_run_already_shows_its_blocks_zoomed_out_and_resumes_to_the_same_bytes(ckpt, reference, tmp_path):
    cancel = threading.Event()

    def stop_after_three(event):
        if event.phase == "restore" and event.step >= 3:
            cancel.set()

    out = tmp_path / "out.zarr"
    restore(WIDE, ckpt, out, progress=stop_after_three, cancel=cancel, **GRID)
    level0, level1 = (a[...] for a in levels(out))
    done = level0.any(axis=0)  # columns of the finished blocks
    assert 0 < done.sum() < done.size
    columns = np.flatnonzero(done[: 2 * 550].reshape(550, 2).all(axis=1))  # level-1 columns over finished blocks
    assert columns.size > 0 and level1[:, columns].any()
    np.testing.assert_array_equal(
        level1[:, columns], mean_pool(level0[:, : 2 * 550], [True, True], np.float32)[:, columns]
    )
    assert not level1[:, ~done[: 2 * 550].reshape(550, 2).any(axis=1)].any()  # nothing over unfinished blocks
    restore(WIDE, ckpt, out, **GRID)
    assert file_digest(out) == file_digest(reference)


def test_levels_asked_when_resuming_a_run_begun_without_them_are_built_at_the_end(ckpt, reference, tmp_path):
    cancel = threading.Event()
    out = tmp_path / "out.zarr"
    restore(WIDE, ckpt, out, pyramid_levels=0, progress=lambda e: e.step >= 2 and cancel.set(), cancel=cancel, **GRID)
    assert len(levels(out)) == 1  # stopped, without levels
    restore(WIDE, ckpt, out, pyramid_levels=2, **GRID)  # the pyramid is not fingerprinted: this resumes
    built = shutil.copytree(reference, tmp_path / "built.zarr")
    build_pyramid(built, 2)
    assert [a.shape for a in levels(out)] == [(48, 1100), (24, 550), (12, 275)]
    for k in range(3):
        np.testing.assert_array_equal(levels(out)[k][...], levels(built)[k][...])


@pytest.mark.parametrize("bad", ["lots", -1, 11, 2.5])
def test_bad_pyramid_levels_are_refused_with_the_choices(ckpt, tmp_path, bad):
    with pytest.raises(InputError, match="pyramid_levels must be 'auto' or a whole number"):
        restore(WIDE, ckpt, tmp_path / "o.zarr", pyramid_levels=bad, **GRID)
    assert not (tmp_path / "o.zarr").exists()
