"""Distill widget: pick layers or files, optionally train a teacher first, distil a student with live progress and
Stop."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    LineEdit,
)

from ..checkpoint import load_checkpoint
from ..data.degrade import DegradationConfig
from ..distillation.api import distill, train_teacher
from ..distillation.config import DataConfig, DistillJob, LossConfig, TeacherJob, TrainConfig
from ..errors import InputError
from ..models import PRESETS
from ..pretrained import STUDENT, TEACHER
from ..progress import ProgressEvent
from ._fields import field_widget
from ._layers import default_axes, layer_array, layer_picker
from ._plot import LossPlot
from ._qt import ScrollingForm, Task, notify, report_error, run_controls, show_progress
from ._session import SESSION

DEGRADATIONS: list[str] = list(get_args(DegradationConfig.model_fields["kind"].annotation))
TEACHER_MODES = ["use the loaded teacher", "train a teacher first", "fine-tune the shipped teacher first"]
FINETUNE_LR = 1e-4  # small: the shipped prior is kept (and keep_best never ends below it)
#: Where the training images come from: image layers, or files / a folder that need not be loaded.
LAYERS, FILES, FOLDER = "image layers", "files", "a folder"
PATH_MODES = {FILES: "rm", FOLDER: "d"}
#: Quick-start sizes for an interactive session on a laptop CPU (the job models' defaults suit longer runs).
QUICK = {"teacher_preset": "teacher-tiny", "teacher_steps": 300, "student": "student-tiny", "steps": 200}


def build_jobs(form: dict[str, Any], degraded: Any, clean: Any, teacher: Any) -> tuple[TeacherJob | None, DistillJob]:
    """The validated jobs for a filled-in form (no Qt: testable on its own)."""
    degradation = None if form["degradation"] == "none" else {"kind": form["degradation"], "sigma": form["noise"]}
    data = {"degraded": degraded, "clean": clean, "axes": form["axes"] or None, "degradation": degradation,
            "batch_size": form["batch_size"], "val_fraction": form["val_fraction"]}  # fmt: skip
    if form["patch_size"] != DataConfig.model_fields["patch_size"].default:  # the default fits itself to small images
        data["patch_size"] = form["patch_size"]
    output = Path(form["output"])
    teacher_job = None
    if form["teacher_mode"] == TEACHER_MODES[1]:
        teacher_job = TeacherJob(
            data=data, model=form["teacher_preset"], output=str(output.with_name(output.stem + "-teacher.pt")),
            overwrite=form["overwrite"], train={"steps": form["teacher_steps"], "lr": form["lr"]},
        )  # fmt: skip
    elif form["teacher_mode"] == TEACHER_MODES[2] or teacher is None:  # no teacher named: the shipped one, fine-tuned
        teacher_job = TeacherJob(
            data=data, init=TEACHER, output=str(output.with_name(output.stem + "-teacher.pt")),
            overwrite=form["overwrite"], train={"steps": form["teacher_steps"], "lr": FINETUNE_LR},
        )  # fmt: skip
    levels = tuple(s.strip() for s in form["levels"].split(",") if s.strip())
    loss = {"method": form["method"], "alpha1": form["alpha1"], "alpha2": form["alpha2"], "alpha3": form["alpha3"],
            "sigma": form["sigma"] or None, "levels": levels}  # fmt: skip
    minutes = form.get("minutes", 0)
    train = {"steps": form["steps"], "lr": form["lr"]} if not minutes else {"max_time": 60 * minutes, "lr": form["lr"]}
    distill_job = DistillJob(
        data=data,
        teacher=teacher if teacher_job is None else teacher_job.output,
        student=form["student"],
        student_init=STUDENT if form.get("student_init") else None,
        loss=loss,
        train=train,
        output=str(output),
        overwrite=form["overwrite"],
    )  # fmt: skip  (a teacher trained first is read from where its job saves it)
    return teacher_job, distill_job


def path_source(value: Path | tuple[Path, ...] | None) -> str | list[str] | None:
    """A file picker's value as a job's data source: a path, a list of paths (in name order, as in a folder, so
    degraded and clean files pair up however they were picked), or None when empty."""
    if isinstance(value, tuple):
        return sorted(str(p) for p in value) or None
    return None if value is None or not str(value) else str(value)


class DistillWidget(ScrollingForm):
    """Everything a distillation needs, with a progress bar, a live loss plot and a Stop button."""

    def __init__(self, napari_viewer=None):
        self.viewer = napari_viewer
        self.source = ComboBox(
            label="data from", choices=[LAYERS, FILES, FOLDER], value=LAYERS,
            tooltip="image layers, or image files / a folder of images read from disk (need not be loaded)",
        )  # fmt: skip
        self.degraded = layer_picker(napari_viewer, "degraded layer", optional=True)
        self.clean = layer_picker(napari_viewer, "clean layer", optional=True)
        path_help = "TIFF, OME-Zarr, zarr, NIfTI or DICOM; aligned degraded and clean images in the same order"
        self.degraded_path = FileEdit(label="degraded files", mode="rm", nullable=True, visible=False,
                                      tooltip=path_help)  # fmt: skip
        self.clean_path = FileEdit(label="clean files", mode="rm", nullable=True, visible=False, tooltip=path_help)
        self.axes = LineEdit(
            label="axes", value="YX",
            tooltip="OME letters of the images' axes, e.g. YX, ZYX, TZYX; for files, empty: from the file's metadata",
        )  # fmt: skip
        self.degradation = ComboBox(
            label="synthetic noise", choices=["none", *DEGRADATIONS], value="none",
            tooltip="degrade clean images on the fly (when no degraded images are given)",
        )  # fmt: skip
        self.noise = field_widget(DegradationConfig, "sigma", label="noise sigma", max=2.0, step=0.01)
        self.teacher_mode = ComboBox(
            label="teacher", choices=TEACHER_MODES, value=TEACHER_MODES[0],
            tooltip="with no teacher loaded, 'use the loaded teacher' fine-tunes the shipped one first",
        )  # fmt: skip
        self.teacher_preset = ComboBox(label="teacher preset", choices=list(PRESETS), value=QUICK["teacher_preset"])
        self.teacher_steps = field_widget(TrainConfig, "steps", label="teacher steps", value=QUICK["teacher_steps"])
        self.student = ComboBox(label="student", choices=list(PRESETS), value=QUICK["student"])
        self.student_init = CheckBox(
            text="start the student from the shipped one (unet-s)", value=False,
            tooltip=f"the student starts from {STUDENT} (its architecture replaces the preset) and keeps its "
            "best validation on the held-out rows",
        )  # fmt: skip
        self.method = field_widget(LossConfig, "method")
        self.steps = field_widget(TrainConfig, "steps", value=QUICK["steps"])
        self.minutes = FloatSpinBox(
            label="time budget (min)", value=0.0, min=0.0, max=10**5, step=1.0,
            tooltip="train for this many minutes (the learning-rate schedule spans them); 0: train for 'steps'",
        )  # fmt: skip
        self.patch_size = field_widget(DataConfig, "patch_size", step=8)
        self.batch_size = field_widget(DataConfig, "batch_size")
        self.lr = field_widget(TrainConfig, "lr", label="learning rate", max=1.0, step=1e-4)
        self.val_fraction = field_widget(DataConfig, "val_fraction", label="validation rows", step=0.05)
        self.advanced = CheckBox(text="advanced loss settings", value=False)
        self.alpha1 = field_widget(LossConfig, "alpha1", label="alpha1 (MCA)", max=100, step=0.1)
        self.alpha2 = field_widget(LossConfig, "alpha2", label="alpha2 (GK)", max=100, step=0.05)
        self.alpha3 = field_widget(LossConfig, "alpha3", label="alpha3 (contrastive)", max=100, step=0.05)
        self.sigma = field_widget(LossConfig, "sigma", label="kernel sigma", max=100, step=0.1)
        self.levels = field_widget(LossConfig, "levels")
        self.advanced_box = Container(widgets=[self.alpha1, self.alpha2, self.alpha3, self.sigma, self.levels],
                                      visible=False)  # fmt: skip
        default_out = Path.home() / "napari-skd" / "student.pt"
        self.output = FileEdit(label="save student to", mode="w", value=str(default_out))
        self.overwrite = CheckBox(text="overwrite an existing file", value=False)
        self.start, self.stop, self.progress, self.status = run_controls("Distil")
        super().__init__(
            widgets=[
                self.source,
                self.degraded,
                self.clean,
                self.degraded_path,
                self.clean_path,
                self.axes,
                self.degradation,
                self.noise,
                self.teacher_mode,
                self.teacher_preset,
                self.teacher_steps,
                self.student,
                self.student_init,
                self.method,
                self.steps,
                self.minutes,
                self.patch_size,
                self.batch_size,
                self.lr,
                self.val_fraction,
                self.advanced,
                self.advanced_box,
                self.output,
                self.overwrite,
                self.start,
                self.stop,
                self.progress,
                self.status,
            ]  # fmt: skip
        )

        self.plot = LossPlot()
        form = self.body.native.layout()
        form.insertWidget(form.count() - 1, self.plot.native, 1)  # above the spare space, taking it
        self.task: Task | None = None
        self.advanced.changed.connect(lambda v: setattr(self.advanced_box, "visible", v))
        self.degraded.changed.connect(self._guess_axes)
        self.source.changed.connect(self._show_source)
        self.start.changed.connect(self.run)
        self.stop.changed.connect(self.request_stop)

    def _guess_axes(self, name: str) -> None:
        if self.viewer is not None and name in self.viewer.layers:
            layer = self.viewer.layers[name]
            self.axes.value = default_axes(layer.ndim, getattr(layer, "rgb", False))

    def _show_source(self, source: str) -> None:
        """Show the layer pickers or the file pickers (for files or a folder)."""
        from_files = source != LAYERS
        self.degraded.visible = self.clean.visible = not from_files
        self.degraded_path.visible = self.clean_path.visible = from_files
        if from_files:
            for box in (self.degraded_path, self.clean_path):
                box.mode = PATH_MODES[source]
                box.label = f"{'degraded' if box is self.degraded_path else 'clean'} {source.removeprefix('a ')}"
            self.axes.value = ""  # read from each file (an ambiguous shape is refused with the choices)
        else:
            self._guess_axes(self.degraded.value)

    def data_sources(self) -> tuple[Any, Any]:
        """The (degraded, clean) sources chosen: layer data, or paths (files, a folder); None where not given."""
        if self.source.value == LAYERS:
            degraded, clean = layer_array(self.viewer, self.degraded.value), layer_array(self.viewer, self.clean.value)
            if degraded is None and clean is None:
                raise InputError("pick a degraded layer, a clean layer (with synthetic noise), or both")
            return degraded, clean
        degraded, clean = path_source(self.degraded_path.value), path_source(self.clean_path.value)
        if degraded is None and clean is None:
            what = "a folder" if self.source.value == FOLDER else "files"
            raise InputError(f"choose {what} of degraded images, of clean images (with synthetic noise), or both")
        return degraded, clean

    def form(self) -> dict[str, Any]:
        names = ["axes", "degradation", "noise", "teacher_mode", "teacher_preset", "teacher_steps", "student",
                 "student_init", "method", "steps", "minutes", "patch_size", "batch_size", "lr", "val_fraction",
                 "alpha1", "alpha2", "alpha3", "sigma", "levels", "output", "overwrite"]  # fmt: skip
        return {n: getattr(self, n).value for n in names}

    def run(self) -> Task | None:
        """Start the job in a worker thread (returns it, or None when the form is invalid)."""
        try:
            degraded, clean = self.data_sources()
            teacher_job, distill_job = build_jobs(self.form(), degraded, clean, SESSION.teacher)
        except Exception as exc:  # validation errors from pydantic read well enough
            report_error(exc if isinstance(exc, InputError) else InputError(str(exc)))
            return None
        self.plot.clear()
        self.task = Task(lambda progress, cancel: _run(teacher_job, distill_job, progress, cancel),
                       self._on_event, self._on_done, self._on_finally)  # fmt: skip
        self.start.enabled, self.stop.enabled = False, True
        self.status.value = "starting..."
        self.task.start()
        return self.task

    def request_stop(self) -> None:
        if self.task is not None:
            self.task.stop()
            self.status.value = "stopping after the current step (a checkpoint is saved)..."

    def _on_event(self, e: ProgressEvent) -> None:
        show_progress(self.progress, self.status, e, "teacher: step " if e.phase == "teacher" else "student: step ")
        self.plot.add(e)

    def _on_done(self, result: tuple[Path, bool]) -> None:
        path, completed = result
        SESSION.set("student", load_checkpoint(path))
        notify(f"student saved to {path}" + ("" if completed else " (stopped early; rerun to resume)"))
        self.status.value = f"saved {path}" if completed else f"stopped; saved {path}"

    def _on_finally(self) -> None:
        self.start.enabled, self.stop.enabled = True, False
        self.task = None


def _run(teacher_job, distill_job, progress, cancel) -> tuple[Path, bool]:
    """Worker body: train the teacher when asked, then distil; events of the teacher phase are marked 'teacher'."""
    if teacher_job is not None:

        def teacher_progress(e: ProgressEvent) -> None:
            progress(ProgressEvent("teacher" if e.phase == "train" else e.phase, e.step, e.total, e.losses,
                                   e.metrics, e.eta_s, e.message))  # fmt: skip

        path = train_teacher(teacher_job, progress=teacher_progress, cancel=cancel)  # saved at distill_job.teacher
        if cancel.is_set():
            return path, False
    out = distill(distill_job, progress=progress, cancel=cancel)
    return out, not cancel.is_set()
