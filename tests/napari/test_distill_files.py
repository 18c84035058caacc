"""GUI: the Distil widget trains from image files or a folder that are not loaded as layers."""

import numpy as np
import pytest
import tifffile

from napari_skd._napari._distill import FILES, FOLDER, LAYERS, DistillWidget
from napari_skd._napari._session import SESSION
from napari_skd.checkpoint import load_checkpoint, save_checkpoint
from napari_skd.models import build_model
from napari_skd.samples import load_sample

pytestmark = pytest.mark.usefixtures("fresh_session")


def shown(widget) -> bool:
    """Whether a widget is switched on (``visible`` also needs the window on screen)."""
    return not widget.native.isHidden()


@pytest.fixture
def folders(tmp_path):
    """Two aligned folders of 2D TIFFs: noisy/ and clean/ (crops of the nuclei sample)."""
    image, _ = load_sample("nuclei2d")
    rng = np.random.default_rng(0)
    for sub in ("noisy", "clean"):
        (tmp_path / sub).mkdir()
    for i, (y, x) in enumerate([(0, 0), (64, 96)]):
        clean = image[y : y + 96, x : x + 96].astype(np.float32)
        tifffile.imwrite(tmp_path / "clean" / f"img{i}.tif", clean)
        tifffile.imwrite(tmp_path / "noisy" / f"img{i}.tif", clean + rng.normal(0, 10, clean.shape).astype(np.float32))
    return tmp_path / "noisy", tmp_path / "clean"


def test_distill_widget_trains_from_a_tiff_folder_without_layers(
    make_napari_viewer_proxy, qtbot, tmp_path, folders, errors
):
    noisy, clean = folders
    viewer = make_napari_viewer_proxy()
    widget = DistillWidget(viewer)
    viewer.window.add_dock_widget(widget)
    SESSION.teacher = load_checkpoint(save_checkpoint(tmp_path / "t.pt", build_model("student-tiny")))
    widget.source.value = FOLDER
    assert shown(widget.degraded_path) and not shown(widget.degraded) and widget.degraded_path.mode.value == "d"
    assert widget.axes.value == ""  # read from the files
    widget.degraded_path.value, widget.clean_path.value = noisy, clean
    widget.student.value = "student-tiny"
    widget.steps.value = 3
    widget.patch_size.value = 32
    widget.batch_size.value = 2
    widget.output.value = tmp_path / "student.pt"
    job = widget.run()
    assert job is not None and len(viewer.layers) == 0
    with qtbot.waitSignal(job.worker.finished, timeout=120_000):
        pass
    assert not errors, errors
    student = load_checkpoint(tmp_path / "student.pt")
    assert student.role == "student" and student.record["completed"] and student.record["steps"] == 3
    assert student.record["data"]["degraded"] == str(noisy) and student.record["data"]["clean"] == str(clean)
    assert SESSION.student is not None and widget.plot.series
    assert widget.progress.value == 3 and widget.start.enabled and not widget.stop.enabled


def test_file_sources_and_their_mistakes(make_napari_viewer_proxy, tmp_path, folders, errors):
    noisy, clean = folders
    widget = DistillWidget(make_napari_viewer_proxy())
    widget.source.value = FILES
    assert widget.clean_path.mode.value == "rm" and widget.clean_path.label == "clean files"
    assert widget.run() is None and "choose files of degraded images" in errors[-1]
    widget.clean_path.value = sorted(clean.iterdir(), reverse=True)  # picked in any order: used in name order
    assert widget.data_sources() == (None, [str(p) for p in sorted(clean.iterdir())])
    SESSION.teacher = load_checkpoint(save_checkpoint(tmp_path / "t.pt", build_model("student-tiny")))
    widget.degradation.value = "none"
    assert widget.run() is None and "clean images alone need a 'degradation'" in errors[-1]
    widget.source.value = FOLDER
    widget.degraded_path.value = tmp_path / "missing"
    widget.clean_path.value = None
    assert widget.data_sources() == (str(tmp_path / "missing"), None)
    widget.source.value = LAYERS
    assert shown(widget.degraded) and not shown(widget.degraded_path) and widget.axes.value == ""
    assert widget.run() is None and "pick a degraded layer" in errors[-1]
