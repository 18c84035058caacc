"""The shipped generalists in the widgets: listed and loaded in Models, offered by Restore, fine-tuned by Distil."""

import math

import numpy as np

from napari_skd._napari._distill import TEACHER_MODES, build_jobs
from napari_skd._napari._models import ModelsWidget
from napari_skd._napari._restore import RestoreWidget
from napari_skd.samples import load_sample


def test_models_widget_loads_a_shipped_model_as_its_role(make_napari_viewer_proxy, fresh_session):
    widget = ModelsWidget(make_napari_viewer_proxy())
    assert "pretrained:general-2d" in widget.shipped.choices
    widget.shipped.value = "pretrained:general-2d-student"
    assert widget.load_named(widget.shipped.value)
    assert fresh_session.student is not None and fresh_session.student.record["name"] == widget.shipped.value
    assert "each input's own 1/99.8 percentiles" in widget.student_info.value
    widget.shipped.value = "pretrained:general-2d"
    widget.load_shipped.native.click()
    assert fresh_session.teacher.config.arch == "restormer"


def test_restore_widget_restores_zero_shot_with_nothing_loaded(make_napari_viewer_proxy, qtbot, fresh_session):
    image, _ = load_sample("nuclei2d")
    clean = image[:128, :128].astype(np.float32)
    lo, hi = np.percentile(clean, (1, 99.8))
    noisy = clean + np.random.default_rng(0).normal(0, 0.1 * (hi - lo), clean.shape).astype(np.float32)
    viewer = make_napari_viewer_proxy()
    viewer.add_image(noisy, name="noisy")
    widget = RestoreWidget(viewer)
    assert widget.model.value == "pretrained:general-2d-student"
    job = widget.run()
    with qtbot.waitSignal(job.worker.finished, timeout=120_000):
        pass
    out = np.asarray(viewer.layers["noisy restored (pretrained:general-2d-student)"].data)

    def psnr(x):
        return 10 * math.log10(1 / np.mean(((x - clean) / (hi - lo)) ** 2))

    assert psnr(out) > psnr(noisy) + 6


def test_distil_form_fine_tunes_the_shipped_teacher_and_student(tmp_path):
    form = {"axes": "YX", "degradation": "gaussian", "noise": 0.1, "teacher_mode": TEACHER_MODES[2],
            "teacher_preset": "teacher-tiny", "teacher_steps": 20, "student": "unet-xs", "student_init": True,
            "method": "skd-rec", "steps": 2, "patch_size": 16, "batch_size": 2, "lr": 1e-3, "val_fraction": 0.1,
            "alpha1": 1.0, "alpha2": 0.1, "alpha3": 0.0, "sigma": 0.0, "levels": "enc1, dec1",
            "output": str(tmp_path / "s.pt"), "overwrite": False}  # fmt: skip
    teacher_job, distill_job = build_jobs(form, None, np.zeros((64, 64), np.float32), None)
    assert teacher_job.init == "pretrained:general-2d" and teacher_job.train.lr < form["lr"]
    assert distill_job.teacher == teacher_job.output and distill_job.student_init == "pretrained:general-2d-student"
