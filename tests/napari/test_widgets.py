"""GUI: the widgets driven through their whole path in a real napari viewer (Xvfb), on tiny models."""

import time
from typing import get_args

import numpy as np
import pytest
from qtpy.QtCore import QTimer

from conftest import untrained
from napari_skd._napari._distill import DistillWidget, build_jobs
from napari_skd._napari._models import ModelsWidget
from napari_skd._napari._preview import preview_region
from napari_skd._napari._restore import ZARR, RestoreWidget
from napari_skd._napari._session import SESSION
from napari_skd.checkpoint import load_checkpoint, save_checkpoint
from napari_skd.models import build_model
from napari_skd.samples import load_sample

pytestmark = pytest.mark.usefixtures("fresh_session")


@pytest.fixture
def teacher_file(tmp_path):
    return save_checkpoint(tmp_path / "teacher.pt", build_model("student-tiny"), role="teacher")


def test_models_widget_loads_and_describes_checkpoints(make_napari_viewer_proxy, teacher_file, tmp_path, errors):
    viewer = make_napari_viewer_proxy()
    widget = ModelsWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.teacher_file.value = teacher_file
    widget.load_teacher.clicked.emit()
    assert SESSION.teacher is not None and SESSION.teacher.role == "teacher"
    assert "role: teacher" in widget.teacher_info.value and "parameters: 207,393" in widget.teacher_info.value
    assert widget.device.value.startswith("using ")
    # a teacher is not a student
    widget.student_file.value = teacher_file
    widget.load_student.clicked.emit()
    assert SESSION.student is None and "holds a teacher, not a student" in errors[-1]


def test_models_widget_refuses_unsafe_and_broken_files(make_napari_viewer_proxy, tmp_path, errors):
    viewer = make_napari_viewer_proxy()
    widget = ModelsWidget(viewer)
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    assert not widget.load("teacher", bad)
    assert "damaged, truncated or not a PyTorch checkpoint" in errors[-1]
    assert SESSION.teacher is None and widget.teacher_info.value == "no teacher loaded"


def test_layer_pickers_follow_the_layer_list(make_napari_viewer_proxy):
    viewer = make_napari_viewer_proxy()
    widget = DistillWidget(viewer)
    viewer.add_image(np.zeros((32, 32)), name="a")
    assert "a" in widget.degraded.choices and "a" in widget.clean.choices
    viewer.layers.remove("a")
    assert "a" not in widget.degraded.choices


def test_distill_widget_trains_teacher_then_student_with_stop_and_resume(make_napari_viewer_proxy, qtbot, tmp_path):
    viewer = make_napari_viewer_proxy()
    image, _ = load_sample("nuclei2d")
    viewer.add_image(image[:128, :128].astype(np.float32), name="nuclei")
    widget = DistillWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.clean.value = "nuclei"
    widget.degradation.value = "gaussian"
    widget.teacher_mode.value = "train a teacher first"
    widget.teacher_preset.value = "student-tiny"
    widget.teacher_steps.value = 3
    widget.steps.value = 40
    widget.patch_size.value = 32
    widget.batch_size.value = 2
    widget.output.value = tmp_path / "student.pt"

    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(10)

    def stop_when_student_runs(e):
        if e.phase == "train" and e.step >= 2:
            widget.request_stop()

    job = widget.run()
    assert job is not None and not widget.start.enabled and widget.stop.enabled
    job._bridge.event.connect(stop_when_student_runs)
    with qtbot.waitSignal(job.worker.finished, timeout=120_000):
        pass
    timer.stop()
    assert len(ticks) > 5  # the event loop kept running while the job worked
    assert widget.start.enabled and not widget.stop.enabled  # no spinning UI after Stop
    stopped = load_checkpoint(tmp_path / "student.pt")  # Stop saved a usable checkpoint
    assert stopped.role == "student" and not stopped.record["completed"]
    assert SESSION.student is not None
    assert (tmp_path / "student-teacher.pt").exists()
    assert widget.plot.series and widget.progress.value >= 2

    # Run again: the same job resumes and finishes
    widget.teacher_mode.value = "use the loaded teacher"
    SESSION.teacher = load_checkpoint(tmp_path / "student-teacher.pt")
    job = widget.run()
    with qtbot.waitSignal(job.worker.finished, timeout=120_000):
        pass
    done = load_checkpoint(tmp_path / "student.pt")
    assert done.record["completed"] and done.record["resumed"] and done.record["steps"] == 40


def test_distill_widget_reports_bad_input_as_notifications(
    make_napari_viewer_proxy, qtbot, errors, tmp_path, fresh_session
):
    viewer = make_napari_viewer_proxy()
    viewer.add_image(np.random.default_rng(0).random((16, 16), dtype=np.float32), name="tiny")
    widget = DistillWidget(viewer)
    assert widget.run() is None
    assert "pick a degraded layer" in errors[-1]
    widget.degraded.value = "tiny"
    widget.output.value = tmp_path / "s.pt"
    teacher_job, _ = build_jobs(widget.form(), *widget.data_sources(), None)
    assert teacher_job.init == "pretrained:general-2d"  # no teacher named: the shipped one is fine-tuned first
    SESSION.teacher = load_checkpoint(save_checkpoint(tmp_path / "t.pt", build_model("student-tiny")))
    widget.patch_size.value = 32  # chosen, so not shrunk: the 16 x 16 layer is smaller and the worker reports it
    job = widget.run()
    with qtbot.waitSignal(job.worker.finished, timeout=60_000):
        pass
    assert "larger than the image" in errors[-1]
    assert widget.start.enabled and not widget.stop.enabled
    assert not (tmp_path / "s.pt").exists()


# --- restore widget ---------------------------------------------------------------------------------------------


def test_preview_region_is_the_current_slice_around_the_centre():
    region = preview_region((5, 100, 80), "ZYX", (3, 0, 0), (50.0, 10.0), 32)
    assert region == (3, slice(34, 66), slice(0, 32))
    assert preview_region((2, 40, 40), "CYX", (1, 0, 0), (20, 20), 64) == (slice(None), slice(0, 40), slice(0, 40))


@pytest.fixture
def student_and_teacher(tmp_path):
    from napari_skd.normalize import Normalization

    norm = Normalization(low=0.0, high=200.0)
    t = load_checkpoint(save_checkpoint(tmp_path / "t.pt", build_model("student-tiny"), role="teacher", norm=norm))
    s = load_checkpoint(save_checkpoint(tmp_path / "s.pt", untrained("unet-xs"), role="student", norm=norm))
    SESSION.teacher, SESSION.student = t, s
    return t, s


def test_restore_widget_streams_a_zarr_layer_into_ome_zarr(
    make_napari_viewer_proxy, qtbot, tmp_path, student_and_teacher
):
    import dask.array as da
    import zarr

    from napari_skd.io import open_image

    image, _ = load_sample("nuclei2d")
    store = tmp_path / "input.zarr"
    z = zarr.create_array(str(store), shape=(3, 160, 160), chunks=(1, 64, 64), dtype="uint16")
    z[:] = np.stack([image[:160, :160]] * 3)
    viewer = make_napari_viewer_proxy()
    viewer.add_image(da.from_zarr(str(store)), name="vol", scale=(2.0, 0.5, 0.5), translate=(0, 10, 20))
    assert not isinstance(viewer.layers["vol"].data, np.ndarray)  # a lazy, zarr-backed layer
    widget = RestoreWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.axes.value == "ZYX"
    widget.target.value = ZARR
    widget.path.value = tmp_path / "out.zarr"
    widget.tile.value = 64
    job = widget.run()
    widget.axes.value = "YXZ"  # edited while it runs: the layer keeps the axes the job started with
    with qtbot.waitSignal(job.worker.finished, timeout=120_000):
        pass
    layer = viewer.layers["vol restored (student)"]
    assert not isinstance(layer.data, np.ndarray) and layer.data.shape == (3, 160, 160)  # lazy view of the output
    np.testing.assert_allclose(layer.scale, (2.0, 0.5, 0.5))
    np.testing.assert_allclose(layer.translate, (0, 10, 20))
    out = open_image(tmp_path / "out.zarr")
    assert out.shape == (3, 160, 160) and out.scale == {"Z": 2.0, "Y": 0.5, "X": 0.5}
    assert np.isfinite(np.asarray(layer.data[1])).all()
    assert widget.start.enabled and not widget.stop.enabled


def test_preview_and_compare_show_psnr_against_clean(make_napari_viewer_proxy, qtbot, student_and_teacher):
    image, _ = load_sample("nuclei2d")
    clean = image[:96, :96].astype(np.float32)
    noisy = clean + np.random.default_rng(0).normal(0, 10, clean.shape).astype(np.float32)
    viewer = make_napari_viewer_proxy()
    viewer.add_image(noisy, name="noisy")
    viewer.add_image(clean, name="clean")
    widget = RestoreWidget(viewer)
    widget.image.value, widget.clean.value = "noisy", "clean"
    widget.preview_size.value = 64
    job = widget.run_preview()
    with qtbot.waitSignal(job.worker.finished, timeout=60_000):
        pass
    assert viewer.layers["preview: student"].data.shape == (64, 64)
    job = widget.run_compare()
    with qtbot.waitSignal(job.worker.finished, timeout=60_000):
        pass
    assert {"compare: input", "compare: teacher", "compare: student"} <= {layer.name for layer in viewer.layers}
    from napari_skd._napari._view import grid

    assert grid(viewer).enabled
    assert "teacher: PSNR" in widget.status.value and "student: PSNR" in widget.status.value


def test_restore_widget_without_a_model_explains(make_napari_viewer_proxy, errors, fresh_session):
    viewer = make_napari_viewer_proxy()
    viewer.add_image(np.zeros((32, 32), np.float32), name="img")
    widget = RestoreWidget(viewer)
    assert widget.model.value == "pretrained:general-2d-student"  # nothing loaded: the shipped student is offered
    widget.model.value = "student"
    assert widget.run() is None
    assert "load a student in the Models widget first, or choose pretrained:general-2d-student" in errors[-1]


def test_forms_take_defaults_ranges_and_help_from_the_job_models(make_napari_viewer_proxy):
    from napari_skd.distillation.config import DataConfig, LossConfig, TrainConfig
    from napari_skd.restoration.options import RestoreOptions

    distil, restore = DistillWidget(make_napari_viewer_proxy()), RestoreWidget(None)
    patch = DataConfig.model_fields["patch_size"]
    assert (distil.patch_size.value, distil.patch_size.min, distil.patch_size.max) == (patch.default, 8, 1024)
    assert distil.patch_size.tooltip == patch.description
    assert distil.lr.value == TrainConfig.model_fields["lr"].default
    assert distil.method.choices == get_args(LossConfig.model_fields["method"].annotation)
    assert distil.alpha2.value == LossConfig().alpha2 and distil.sigma.value == 0  # None: set from the data
    assert distil.levels.value == ", ".join(LossConfig().levels)
    assert restore.tile.value == 0 and restore.tile.tooltip == RestoreOptions.model_fields["tile"].description
    assert restore.overlap.min == 0 and restore.batch.min == 0  # 0 = automatic (None)


def test_a_teacher_trained_first_is_read_from_where_its_job_saves_it(tmp_path):
    from napari_skd._napari._distill import TEACHER_MODES, build_jobs

    form = {"axes": "YX", "degradation": "gaussian", "noise": 0.1, "teacher_mode": TEACHER_MODES[1],
            "teacher_preset": "teacher-tiny", "teacher_steps": 2, "student": "unet-xs", "method": "skd", "steps": 2,
            "patch_size": 16, "batch_size": 2, "lr": 1e-3, "val_fraction": 0.1, "alpha1": 1.0, "alpha2": 0.1,
            "alpha3": 0.0, "sigma": 0.0, "levels": "enc1, dec1", "output": str(tmp_path / "s.pt"),
            "overwrite": False}  # fmt: skip
    teacher_job, distill_job = build_jobs(form, None, np.zeros((64, 64), np.float32), None)
    assert teacher_job is not None and distill_job.teacher == teacher_job.output == str(tmp_path / "s-teacher.pt")
    assert distill_job.data.patch_size == 16 and "patch_size" in distill_job.data.model_fields_set
    form["patch_size"] = 64  # the form's default: left unset, so it may shrink to fit small images, as on the CLI
    assert "patch_size" not in build_jobs(form, None, np.zeros((64, 64), np.float32), None)[1].data.model_fields_set
