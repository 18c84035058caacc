"""GUI: the Models widget saves the loaded student (or teacher) as a bioimage.io package, in a worker thread."""

import io
import zipfile

import numpy as np
import pytest
import yaml

from napari_skd._napari._models import LICENSE, ModelsWidget, export_arguments, package_path
from napari_skd.checkpoint import save_checkpoint
from napari_skd.export import check_package, validate_package
from napari_skd.models import build_model
from napari_skd.normalize import Normalization

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning"),
    pytest.mark.usefixtures("fresh_session"),
]


@pytest.fixture
def student_file(tmp_path):
    norm = Normalization(low=0.0, high=200.0)
    return save_checkpoint(tmp_path / "tiny.pt", build_model("student-tiny"), role="student", norm=norm)


def test_models_widget_exports_the_loaded_student_with_a_layer_as_test_image(
    make_napari_viewer_proxy, qtbot, tmp_path, student_file, errors
):
    viewer = make_napari_viewer_proxy()
    rng = np.random.default_rng(0)
    stack = rng.uniform(0, 200, (3, 96, 80)).astype(np.float32)
    viewer.add_image(stack, name="stack")
    widget = ModelsWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.student_file.value = student_file
    widget.load_student.clicked.emit()
    assert widget.export_file.value == tmp_path / "tiny.bioimageio.zip"  # suggested beside the checkpoint
    widget.export_file.value = tmp_path / "out" / "denoiser.zip"
    widget.export_name.value = "tiny denoiser (test)"
    widget.export_authors.value = "Ada Lovelace, Alan Turing"
    widget.export_license.value = "MIT"
    widget.test_image.value = "stack"
    assert widget.test_axes.value == "ZYX"  # guessed from the layer
    job = widget.export()
    assert job is not None and not widget.export_start.enabled and widget.export_stop.enabled
    messages = []
    job._bridge.event.connect(lambda e: messages.append(e.message))
    with qtbot.waitSignal(job.worker.finished, timeout=300_000):
        pass
    assert not errors, errors
    package = tmp_path / "out" / "denoiser.zip"
    assert validate_package(package).status in ("valid-format", "passed")
    assert check_package(package)["torchscript"] < 1e-3  # a real package: its weights reproduce its test output
    with zipfile.ZipFile(package) as z:
        rdf = yaml.safe_load(z.read("rdf.yaml"))
        test_input = np.load(io.BytesIO(z.read("test_input.npy")))
    assert rdf["name"] == "tiny denoiser (test)" and rdf["license"] == "MIT"
    assert [a["name"] for a in rdf["authors"]] == ["Ada Lovelace", "Alan Turing"]
    np.testing.assert_array_equal(test_input, stack[None, None, 1, 16:80, 8:72])  # the layer's centre crop
    assert "validating the package with bioimageio.spec" in messages
    assert widget.progress.value == widget.progress.max == 4 and "saved denoiser.zip" in widget.status.value
    assert widget.export_start.enabled and not widget.export_stop.enabled


def test_export_problems_are_notifications(make_napari_viewer_proxy, qtbot, tmp_path, student_file, errors):
    viewer = make_napari_viewer_proxy()
    widget = ModelsWidget(viewer)
    assert widget.export() is None
    assert "load a student above" in errors[-1]
    widget.load("student", student_file)
    widget.export_role.value = "teacher"
    assert widget.export() is None and "load a teacher above" in errors[-1]
    widget.export_role.value = "student"
    widget.export_file.value = tmp_path / "p.zip"
    widget.export_license.value = "not a licence"
    assert widget.export() is not None  # checked by the export itself, in the worker
    # the worker fails at once, maybe before a waitSignal could connect: wait for its end on the GUI thread instead
    qtbot.waitUntil(lambda: widget.export_start.enabled, timeout=60_000)
    assert "unknown licence 'not a licence'" in errors[-1]
    assert widget.export_start.enabled and not widget.export_stop.enabled and not (tmp_path / "p.zip").exists()


def test_export_form_defaults_are_the_exports_own(tmp_path):
    args = export_arguments({"output": tmp_path / "p.zip", "name": " ", "authors": " , ", "license": "",
                             "overwrite": False})  # fmt: skip
    assert args == {"output": tmp_path / "p.zip", "name": None, "authors": None, "license": LICENSE,
                    "overwrite": False}  # fmt: skip
    assert LICENSE == "BSD-3-Clause"
    assert package_path("teacher", tmp_path / "t.pth") == tmp_path / "t.bioimageio.zip"
