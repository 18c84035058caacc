"""Multiscale in napari: an OME-Zarr with a pyramid (ours, or anyone's NGFF 0.4 / 0.5) opens as one lazy multiscale
layer holding every level; the Restore widget shows an OME-Zarr output the same way, and previews a multiscale layer
at the current zoom."""

import json
import sys
from pathlib import Path

import dask.array as da
import imageio.v3 as iio
import numpy as np
import pytest
import torch
import zarr

from conftest import untrained
from napari_skd import restore
from napari_skd._napari._reader import napari_get_reader
from napari_skd._napari._restore import ZARR, RestoreWidget
from napari_skd._napari._session import SESSION
from napari_skd._napari._view import camera
from napari_skd.checkpoint import load_checkpoint, save_checkpoint
from napari_skd.io.pyramid import mean_pool
from napari_skd.normalize import Normalization
from napari_skd.samples import load_sample

NUCLEI, _ = load_sample("nuclei2d")
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
WIDE = np.tile(NUCLEI[:64], (1, 3))[:, :1100]  # 64 x 1100: "auto" gives one 2x level


@pytest.fixture
def student(tmp_path, fresh_session):
    torch.manual_seed(0)
    norm = Normalization(low=0.0, high=float(NUCLEI.max()))
    path = save_checkpoint(tmp_path / "s.pt", untrained("unet-xs"), role="student", norm=norm)
    SESSION.student = load_checkpoint(path)
    return path


def read(path) -> list[tuple]:
    reader = napari_get_reader(str(path))
    assert reader is not None, f"napari-skd does not claim {path}"
    return reader(str(path))


def test_our_output_opens_as_one_multiscale_layer_with_every_level(student, tmp_path):
    out = restore(WIDE, student, tmp_path / "out.ome.zarr", tile=64, chunks=256, pyramid_levels=2)
    ((data, kwargs, kind),) = read(out)
    assert kind == "image" and kwargs["multiscale"] is True
    assert [d.shape for d in data] == [(64, 1100), (32, 550), (16, 275)]
    assert all(isinstance(d, da.Array) for d in data)  # lazy: nothing read yet
    level0 = np.asarray(data[0])
    np.testing.assert_array_equal(np.asarray(data[1]), mean_pool(level0, [True, True], np.float32))
    assert kwargs["scale"] == (1.0, 1.0) and kwargs["translate"] == (0.0, 0.0)  # napari derives each level's


def ngff04(path, levels: int, scale=(0.5, 0.25), translate=(3.0, 4.0)):
    """An OME-Zarr 0.4 (zarr v2, .zattrs) with ``levels`` 2x levels, written as ome-zarr-py lays it out."""
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    x = np.arange(40 * 64, dtype=np.uint16).reshape(40, 64)
    datasets = []
    for k in range(levels + 1):
        group.create_array(str(k), data=x[:: 2**k, :: 2**k], chunks=(16, 16))
        s = [v * 2**k for v in scale]
        datasets.append({"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": s}]})
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": "y", "type": "space", "unit": "micrometer"}, {"name": "x", "type": "space"}],
            "datasets": datasets,
            "coordinateTransformations": [{"type": "translation", "translation": list(translate)}],
        }
    ]
    return x


def test_an_ngff_04_pyramid_from_another_tool_opens_as_multiscale(tmp_path):
    x = ngff04(tmp_path / "other.zarr", levels=2)
    ((data, kwargs, _),) = read(tmp_path / "other.zarr")
    assert kwargs["multiscale"] is True and [d.shape for d in data] == [(40, 64), (20, 32), (10, 16)]
    np.testing.assert_array_equal(np.asarray(data[2]), x[::4, ::4])
    assert kwargs["scale"] == (0.5, 0.25)


def test_a_listed_level_that_is_missing_keeps_the_levels_before_it(tmp_path):
    ngff04(tmp_path / "cut.zarr", levels=2)
    meta = json.loads((tmp_path / "cut.zarr" / ".zattrs").read_text())
    meta["multiscales"][0]["datasets"].append({"path": "9", "coordinateTransformations": []})
    (tmp_path / "cut.zarr" / ".zattrs").write_text(json.dumps(meta))
    ((data, kwargs, _),) = read(tmp_path / "cut.zarr")
    assert [d.shape for d in data] == [(40, 64), (20, 32), (10, 16)]
    ngff04(tmp_path / "one.zarr", levels=0)  # a single level stays a plain layer
    ((data, kwargs, _),) = read(tmp_path / "one.zarr")
    assert "multiscale" not in kwargs and data.shape == (40, 64)


def test_restore_widget_shows_its_ome_zarr_output_as_a_multiscale_layer(
    make_napari_viewer_proxy, qtbot, student, tmp_path
):
    viewer = make_napari_viewer_proxy()
    viewer.add_image(WIDE, name="wide")
    widget = RestoreWidget(viewer)
    widget.model.value = "student"
    widget.target.value = ZARR
    widget.path.value = tmp_path / "out.zarr"
    widget.tile.value, widget.chunks.value = 64, 256
    seen = []
    widget.progress.changed.connect(
        lambda _: seen.append(widget.output_layer is not None and widget.output_layer.multiscale)
    )
    job = widget.run()
    with qtbot.waitSignal(job.worker.finished, timeout=120_000):
        pass
    layer = viewer.layers["wide restored (student)"]
    assert layer.multiscale and [tuple(d.shape) for d in layer.data] == [(64, 1100), (32, 550)]
    assert any(seen)  # multiscale already while blocks were still arriving
    level0, level1 = (np.asarray(d) for d in layer.data)
    np.testing.assert_array_equal(level1, mean_pool(level0, [True, True], np.float32))


def test_preview_of_a_multiscale_layer_restores_the_region_on_screen(
    make_napari_viewer_proxy, qtbot, student, tmp_path
):
    restored = restore(WIDE, student, tmp_path / "in.zarr", tile=64, chunks=256)
    viewer = make_napari_viewer_proxy()
    ((data, kwargs, _),) = read(restored)
    viewer.add_image(data, name="big", **{k: v for k, v in kwargs.items() if k in ("scale", "translate", "multiscale")})
    camera(viewer).center = (32, 800)
    camera(viewer).zoom = 0.25  # zoomed out
    widget = RestoreWidget(viewer)
    widget.image.value = "big"
    widget.model.value = "student"
    widget.preview_size.value = 64
    job = widget.run_preview()
    with qtbot.waitSignal(job.worker.finished, timeout=60_000):
        pass
    preview = viewer.layers["preview: student"]
    assert preview.data.shape == (64, 64)
    np.testing.assert_allclose(preview.translate, (0, 768))  # the 64 px around the centre of the view
    expected = restore(np.asarray(data[0])[:, 768:832], student)  # the widget's default plan
    np.testing.assert_allclose(preview.data, expected, atol=1e-4)


def test_napari_opens_zooms_out_and_pans_a_pyramid_in_a_child_process(tmp_path):
    """The 4 GB benchmark's path at a small size: a child napari under Xvfb draws a coarse level zoomed out, level 0
    when panning at full resolution, and reports its peak RSS."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from napari_multiscale import view, write_volume
    finally:
        sys.path.remove(str(BENCHMARKS))
    volume = write_volume(tmp_path / "v.ome.zarr", 3000)
    assert volume["levels"] == 2  # 3000 -> 1500 -> 750
    seen = view(tmp_path / "v.ome.zarr", tmp_path)
    assert seen["multiscale"] and seen["levels"] == [[3000, 3000], [1500, 1500], [750, 750]]
    assert seen["whole_level"] > 0 and seen["pan_level"] == 0
    assert 0 < seen["peak_rss_mb"] < 1536
    whole = iio.imread(tmp_path / "whole.png")
    assert whole.std() > 10  # the rings are drawn, not a blank canvas
