"""GUI: the Restore widget's fidelity check (a PSNR map over the image, its scale and the block under the cursor) and
the labelled comparison grid."""

import math

import numpy as np
import pytest

from conftest import Damaged, untrained
from napari_skd._napari._qc import PSNR_RANGE, STOPS, cell_text, heatmap_layer
from napari_skd._napari._restore import COMPARE, DIFF, ZARR, RestoreWidget
from napari_skd._napari._session import SESSION
from napari_skd._napari._view import MARGIN, camera, grid, panel_layout
from napari_skd.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from napari_skd.normalize import Normalization
from napari_skd.restoration.fidelity import MAX_PSNR, BlockFidelity, FidelityReport
from napari_skd.restoration.target import read_qc
from napari_skd.samples import load_sample

NORM = Normalization(low=0.0, high=200.0)
pytestmark = pytest.mark.usefixtures("fresh_session")


@pytest.fixture
def damaged_pair(tmp_path):
    """A teacher, and a student that is the teacher except where the input is bright."""
    teacher = load_checkpoint(save_checkpoint(tmp_path / "t.pt", untrained("unet-xs"), role="teacher", norm=NORM))
    SESSION.teacher = teacher
    SESSION.student = Checkpoint(model=Damaged(teacher.model), config=teacher.config, role="student", norm=NORM)


def volume() -> np.ndarray:
    """Three nuclei slices below 0.9 of the normalised range, with one bright 30 x 30 patch in slice 1."""
    image, _ = load_sample("nuclei2d")
    vol = np.stack([image[:96, :128].astype(np.float32) * 0.7] * 3)
    vol[1, 10:40, 70:100] = 200.0
    return vol


def report_2x2() -> FidelityReport:
    """A 2 x 2 block grid: one block at 26 dB, one identical, two unchecked."""
    blocks = [BlockFidelity("0.0", {"Y": [0, 64], "X": [0, 64]}, 26.0, 0.2, 0.1, "hardest"),
              BlockFidelity("1.1", {"Y": [64, 100], "X": [64, 128]}, MAX_PSNR, 0.0, 0.1, "random")]  # fmt: skip
    return FidelityReport("t", "t.pt", "s", 0.5, 0, 4, "YX", {"Y": 64, "X": 64}, {"Y": 100, "X": 128}, blocks)


def test_map_cells_are_db_with_unchecked_nan_and_identical_at_the_top():
    data, kwargs = heatmap_layer(report_2x2(), "YX", (0.5, 0.5), (10.0, 20.0))
    assert data[0, 0] == 26.0 and data[1, 1] == math.inf  # identical: +inf, not the 100 dB cap
    assert np.isnan(data[0, 1]) and np.isnan(data[1, 0])  # unchecked
    assert kwargs["contrast_limits"] == PSNR_RANGE == (20.0, 50.0)
    cmap = kwargs["colormap"]
    low, high = PSNR_RANGE
    top = cmap.map(np.array([1.0]))[0]
    on_scale = cmap.map(np.clip((np.array([26.0, math.inf]) - low) / (high - low), 0, 1))  # what the shader does
    np.testing.assert_allclose(on_scale[1], top)  # identical = the top of the scale, drawn (alpha > 0)
    assert top[3] > 0 and cmap.map(np.array([np.nan]))[0][3] == 0  # unchecked: transparent
    np.testing.assert_allclose(cmap.map(np.array([0.0]))[0], STOPS[0][1])  # 20 dB: the warning red
    assert on_scale[0][0] > on_scale[0][2]  # 26 dB: still warm


def test_qc_map_marks_the_damaged_slice_in_memory(make_napari_viewer_proxy, qtbot, damaged_pair):
    viewer = make_napari_viewer_proxy()
    viewer.add_image(volume(), name="vol", scale=(3.0, 0.5, 0.5), translate=(0, 10, 20))
    widget = RestoreWidget(viewer)
    widget.qc.value, widget.qc_fraction.value = True, 1.0
    assert not widget.legend.shown  # no map yet
    job = widget.run()
    with qtbot.waitSignal(job.worker.finished, timeout=120_000):
        pass
    heat = viewer.layers["vol restored (student) QC: PSNR vs teacher (dB)"]
    assert heat.data.shape == (3, 1, 1)  # one cell per block: a 2D model restores slice by slice
    # the student adds 0.5 (normalised units, data range 1) on the 30 x 30 patch of a 96 x 128 block
    by_hand = 10 * math.log10(1 / (0.5**2 * 30 * 30 / (96 * 128)))
    assert heat.data[1, 0, 0] == pytest.approx(by_hand, abs=1e-3) and by_hand == pytest.approx(17.37, abs=0.01)
    assert heat.data[0, 0, 0] == heat.data[2, 0, 0] == math.inf  # checked and identical
    assert tuple(heat.contrast_limits) == PSNR_RANGE and heat.colorbar.visible
    np.testing.assert_allclose(heat.scale, (3.0, 48.0, 64.0))  # over the whole slice it measures
    np.testing.assert_allclose(heat.translate, (0.0, 10 + 0.5 * 95 / 2, 20 + 0.5 * 127 / 2))
    assert widget.report.worst(1)[0].position["Z"] == 1
    assert "fidelity to the teacher" in widget.status.value
    assert widget.legend.shown and widget.legend.ticks[0].value == "20 dB"

    # the block under the cursor, in words
    viewer.cursor.position = (3.0, 30.0, 50.0)  # slice 1, inside the image
    assert widget.legend.cursor.value == "block Z 1, Y 0:96, X 0:128: PSNR 17.4 dB"
    viewer.cursor.position = (6.0, 30.0, 50.0)
    assert widget.legend.cursor.value == "block Z 2, Y 0:96, X 0:128: identical to the teacher"
    viewer.cursor.position = (3.0, 500.0, 50.0)
    assert widget.legend.cursor.value == "outside the QC map"
    viewer.layers.remove(heat.name)
    viewer.cursor.position = (3.0, 30.0, 50.0)
    assert not widget.legend.shown  # no map, no legend


def test_qc_into_ome_zarr_is_stored_and_drawn(make_napari_viewer_proxy, qtbot, tmp_path, damaged_pair):
    viewer = make_napari_viewer_proxy()
    image = volume()[1]
    viewer.add_image(image, name="slice")
    widget = RestoreWidget(viewer)
    widget.target.value, widget.path.value = ZARR, tmp_path / "out.zarr"
    widget.chunks.value, widget.tile.value, widget.overlap.value = 32, 32, 8  # a 3 x 4 grid of blocks
    widget.qc.value, widget.qc_fraction.value = True, 0.1
    job = widget.run()
    with qtbot.waitSignal(job.worker.finished, timeout=120_000):
        pass
    report = read_qc(tmp_path / "out.zarr")
    assert len(report.blocks) == 2 and report.worst(1)[0].chosen == "hardest"
    heat = viewer.layers["slice restored (student) QC: PSNR vs teacher (dB)"]
    assert heat.data.shape == (3, 4) and np.isnan(heat.data).sum() == 10  # 2 of 12 blocks checked
    assert np.nanargmin(heat.data) % 4 in (2, 3)  # the bright patch's columns
    row, col = next(zip(*np.nonzero(np.isnan(heat.data)), strict=True))
    viewer.cursor.position = (32 * row + 5, 32 * col + 5)
    assert widget.legend.cursor.value.endswith(": not checked")


def test_cursor_text_names_the_block_and_its_psnr(make_napari_viewer_proxy):
    viewer = make_napari_viewer_proxy()
    data, kwargs = heatmap_layer(report_2x2(), "YX", (1.0, 1.0), (0.0, 0.0))
    layer = viewer.add_image(data, **kwargs)
    assert cell_text(layer, (10, 10)) == "block Y 0:64, X 0:64: PSNR 26.0 dB"
    assert cell_text(layer, (90, 100)) == "block Y 64:100, X 64:128: identical to the teacher"
    assert cell_text(layer, (10, 100)) == "block Y 0:64, X 64:128: not checked"
    assert cell_text(layer, (-40, 10)) == ""


def test_the_rendered_map_leaves_unchecked_blocks_clear(make_napari_viewer, qtbot):
    """On screen: an unchecked block shows the image unchanged; an identical block is tinted like 50 dB."""
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.full((256, 256), 0.5, np.float32), name="grey", contrast_limits=(0, 1))
    report = report_2x2()
    report.blocks.append(BlockFidelity("1.0", {"Y": [64, 100], "X": [0, 64]}, 50.0, 0.0, 0.1, "random"))
    data, kwargs = heatmap_layer(report, "YX", (1.0, 1.0), (0.0, 0.0))
    viewer.add_image(data, name="qc", **kwargs)
    cam = camera(viewer)
    cam.center, cam.zoom = (64.0, 64.0), 2.0
    shot = viewer.screenshot(canvas_only=True, flash=False)
    h, w = shot.shape[:2]

    def pixel(y, x):  # world (y, x) -> screen pixel (the canvas centre is the camera centre)
        return shot[int(h / 2 + (y - 64) * 2), int(w / 2 + (x - 64) * 2), :3].astype(int)

    grey = pixel(140, 140)  # outside the map
    np.testing.assert_allclose(pixel(20, 100), grey, atol=2)  # unchecked: the image as it is
    assert np.abs(pixel(80, 100) - grey).max() > 20  # identical: tinted...
    np.testing.assert_allclose(pixel(80, 100), pixel(80, 20), atol=2)  # ...exactly like a 50 dB block
    red = pixel(20, 20)  # 26 dB
    assert red[0] > grey[0] + 40 and red[0] > red[2] + 100


def test_compare_is_a_labelled_grid_with_the_clean_layer(make_napari_viewer_proxy, qtbot, damaged_pair):
    viewer = make_napari_viewer_proxy()
    clean = volume()[1]
    viewer.add_image(clean + np.random.default_rng(0).normal(0, 5, clean.shape).astype(np.float32), name="noisy")
    viewer.add_image(clean, name="clean")
    widget = RestoreWidget(viewer)
    widget.image.value, widget.clean.value = "noisy", "clean"
    widget.preview_size.value = 64
    job = widget.run_compare()
    with qtbot.waitSignal(job.worker.finished, timeout=60_000):
        pass
    shown = [layer for layer in viewer.layers if layer.visible]
    names = [COMPARE["input"], COMPARE["clean"], COMPARE["teacher"], COMPARE["student"], DIFF]
    assert [layer.name for layer in shown] == names  # grid order: a panel each
    assert all(layer.name_overlay.visible for layer in shown)  # each panel says what it shows
    y, x = (int(t) for t in viewer.layers[COMPARE["input"]].translate)  # the crop's place in the image
    np.testing.assert_array_equal(viewer.layers[COMPARE["clean"]].data, clean[y : y + 64, x : x + 64])
    diff = np.abs(viewer.layers[COMPARE["student"]].data - viewer.layers[COMPARE["teacher"]].data)
    np.testing.assert_array_equal(viewer.layers[DIFF].data, diff)
    assert diff.max() > 50  # the damaged patch
    # the difference has its scale: a colour bar, from 0
    assert viewer.layers[DIFF].colorbar.visible and viewer.layers[DIFF].contrast_limits[0] == 0
    assert viewer.layers[DIFF].contrast_limits[1] > 50
    # every image starts MARGIN pixels inside its panel's top-left corner, under the panel's label, and fits
    canvas = viewer.canvas
    assert grid(viewer).enabled and np.prod(grid(viewer).actual_shape(viewer.layers)) >= 5
    panel = np.asarray(canvas.viewbox_size(viewer.layers))
    cam = camera(viewer)
    first = shown[0]
    corner = np.asarray(first.translate) - 0.5
    top_left = (corner - np.asarray(cam.center[-2:])) * cam.zoom + panel / 2  # panel pixels
    np.testing.assert_allclose(top_left, (MARGIN, MARGIN), atol=1e-6)
    assert np.all(top_left + np.asarray(first.data.shape) * cam.zoom <= panel - MARGIN + 1e-6)
    assert "teacher: PSNR" in widget.status.value and "student: PSNR" in widget.status.value


def test_panel_layout_fills_the_canvas():
    assert panel_layout((900, 480), (64, 64), 4) == ((2, 2), pytest.approx((240 - 2 * MARGIN) / 64))
    assert panel_layout((900, 480), (64, 64), 5)[0] == (3, 2)  # tall canvas: 3 rows of 2
    assert panel_layout((480, 1600), (64, 64), 5)[0] == (1, 5)  # wide canvas: one row
    assert panel_layout((400, 400), (100, 50), 2)[0] == (1, 2)  # tall images: side by side


def test_qc_needs_the_student_and_a_teacher(make_napari_viewer_proxy, errors, tmp_path):
    viewer = make_napari_viewer_proxy()
    viewer.add_image(np.zeros((32, 32), np.float32), name="img")
    student = save_checkpoint(tmp_path / "s.pt", untrained("unet-xs"), role="student", norm=NORM)
    SESSION.student = load_checkpoint(student)
    widget = RestoreWidget(viewer)
    widget.qc.value = True
    assert widget.run() is None and "load a teacher in the Models widget first" in errors[-1]
    widget.model.value = "teacher"
    SESSION.teacher = SESSION.student
    assert widget.run() is None and "QC checks the student against the teacher" in errors[-1]
