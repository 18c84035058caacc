"""GUI: the Restore widget's fidelity check (a heat map over the image) and the labelled 2 x 2 comparison."""

import numpy as np
import pytest

from conftest import Damaged, untrained
from napari_skd._napari._restore import DIFF, ZARR, RestoreWidget
from napari_skd._napari._session import SESSION
from napari_skd._napari._view import grid
from napari_skd.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from napari_skd.normalize import Normalization
from napari_skd.restoration.qc import read_qc
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
    """Three nuclei slices below 0.9 of the normalised range, with one bright patch in slice 1."""
    image, _ = load_sample("nuclei2d")
    vol = np.stack([image[:96, :128].astype(np.float32) * 0.7] * 3)
    vol[1, 10:40, 70:100] = 200.0
    return vol


def test_qc_heat_map_marks_the_damaged_slice_in_memory(make_napari_viewer, qtbot, damaged_pair):
    viewer = make_napari_viewer()
    viewer.add_image(volume(), name="vol", scale=(3.0, 0.5, 0.5), translate=(0, 10, 20))
    widget = RestoreWidget(viewer)
    widget.qc.value, widget.qc_fraction.value = True, 1.0
    job = widget.run()
    with qtbot.waitSignal(job.worker.finished, timeout=120_000):
        pass
    heat = viewer.layers["vol restored (student) QC: RMS |student - teacher| per block"]
    assert heat.data.shape == (3, 1, 1)  # one cell per block: a 2D model restores slice by slice
    assert heat.data[1, 0, 0] > 0.01 and heat.data[0, 0, 0] == heat.data[2, 0, 0] == 0
    np.testing.assert_allclose(heat.scale, (3.0, 48.0, 64.0))  # over the whole slice it measures
    np.testing.assert_allclose(heat.translate, (0.0, 10 + 0.5 * 95 / 2, 20 + 0.5 * 127 / 2))
    assert widget.report.worst(1)[0].position["Z"] == 1
    assert "fidelity to the teacher" in widget.status.value


def test_qc_into_ome_zarr_is_stored_and_drawn(make_napari_viewer, qtbot, tmp_path, damaged_pair):
    viewer = make_napari_viewer()
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
    heat = viewer.layers["slice restored (student) QC: RMS |student - teacher| per block"]
    assert heat.data.shape == (3, 4) and np.argmax(heat.data.max(axis=0)) in (2, 3)  # the bright patch's columns


def test_qc_needs_the_student_and_a_teacher(make_napari_viewer, errors, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.float32), name="img")
    student = save_checkpoint(tmp_path / "s.pt", untrained("unet-xs"), role="student", norm=NORM)
    SESSION.student = load_checkpoint(student)
    widget = RestoreWidget(viewer)
    widget.qc.value = True
    assert widget.run() is None and "load a teacher in the Models widget first" in errors[-1]
    widget.model.value = "teacher"
    SESSION.teacher = SESSION.student
    assert widget.run() is None and "QC checks the student against the teacher" in errors[-1]


def test_compare_is_a_labelled_two_by_two_grid(make_napari_viewer, qtbot, damaged_pair):
    viewer = make_napari_viewer()
    viewer.add_image(volume()[1], name="noisy")
    widget = RestoreWidget(viewer)
    widget.preview_size.value = 64
    job = widget.run_compare()
    with qtbot.waitSignal(job.worker.finished, timeout=60_000):
        pass
    shown = [layer for layer in viewer.layers if layer.visible]
    assert [layer.name for layer in shown] == ["compare: input", "compare: teacher", "compare: student", DIFF]
    assert all(layer.name_overlay.visible for layer in shown)  # each panel says what it shows
    diff = np.abs(viewer.layers["compare: student"].data - viewer.layers["compare: teacher"].data)
    np.testing.assert_array_equal(viewer.layers[DIFF].data, diff)
    assert diff.max() > 50  # the damaged patch
    assert grid(viewer).enabled and len(shown) == 4  # four panels fill the 2 x 2 grid
