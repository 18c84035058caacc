"""Models widget: load a teacher and a student checkpoint (or an official Restormer .pth), show what they are, and
save either as a bioimage.io package."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, FileEdit, Label, LineEdit, PushButton

from ..checkpoint import load_checkpoint
from ..describe import describe_checkpoint
from ..device import resolve_device
from ..errors import InputError, SkdError
from ..export import export_bioimageio
from ..progress import ProgressEvent
from ._layers import default_axes, layer_array, layer_image, layer_picker
from ._qt import ScrollingForm, Task, notify, report_error, run_controls, wrapped_label
from ._session import SESSION, SHIPPED, shipped

FILTER = "*.pt *.pth *.ckpt"
#: The export's own default licence (one definition for the CLI, Python and the GUI).
LICENSE = inspect.signature(export_bioimageio).parameters["license"].default


def package_path(role: str, checkpoint_path: Path | None) -> Path:
    """Where a package is suggested: beside the loaded checkpoint (``NAME.bioimageio.zip``), else in ~/napari-skd."""
    if checkpoint_path is None:
        return Path.home() / "napari-skd" / f"{role}.bioimageio.zip"
    return Path(checkpoint_path).with_name(Path(checkpoint_path).stem + ".bioimageio.zip")


def export_arguments(form: dict[str, Any]) -> dict[str, Any]:
    """``export_bioimageio`` keywords for a filled-in export form (no Qt: testable on its own)."""
    authors = [a.strip() for a in form["authors"].split(",") if a.strip()]
    return {
        "output": Path(form["output"]),
        "name": form["name"].strip() or None,
        "authors": authors or None,
        "license": form["license"].strip() or LICENSE,
        "overwrite": form["overwrite"],
    }


class ModelsWidget(ScrollingForm):
    """Teacher and student pickers, their summaries, the device napari-skd will use, and the bioimage.io export."""

    def __init__(self, napari_viewer=None):
        self.viewer = napari_viewer
        self.teacher_file = FileEdit(label="teacher", filter=FILTER, tooltip="napari-skd checkpoint or Restormer .pth")
        self.load_teacher = PushButton(text="Load teacher")
        self.teacher_info = wrapped_label(value="no teacher loaded")
        self.student_file = FileEdit(label="student", filter=FILTER)
        self.load_student = PushButton(text="Load student")
        self.student_info = wrapped_label(value="no student loaded")
        self.shipped = ComboBox(
            label="shipped", choices=list(SHIPPED), value=SHIPPED[0],
            tooltip="generalists pretrained on synthetic and natural images, shipped with napari-skd: restore with "
            "no training, or fine-tune and distil from them",
        )  # fmt: skip
        self.load_shipped = PushButton(text="Load shipped model (as its role)")
        self.device = Label(label="device", value=resolve_device("auto")[1])
        # --- bioimage.io export (the same function as `napari-skd export`) ---
        self.export_role = ComboBox(label="export", choices=["student", "teacher"], value="student")
        self.export_file = FileEdit(
            label="package", mode="w", filter="*.zip", value=str(package_path("student", None)),
            tooltip="the .zip to write (e.g. NAME.bioimageio.zip)",
        )  # fmt: skip
        self.export_name = LineEdit(
            label="name", tooltip="5 to 128 letters, digits, spaces, _ + - ( ); empty: 'napari-skd <role> <arch> <N>D'"
        )
        self.export_authors = LineEdit(label="authors", tooltip="names separated by commas; empty: 'napari-skd user'")
        self.export_license = LineEdit(label="licence", value=LICENSE, tooltip="an SPDX identifier, e.g. MIT")
        self.test_image = layer_picker(napari_viewer, "test image", optional=True)
        self.test_image.tooltip = "its centre crop becomes the package's test input; (none): a sample image"
        self.test_axes = LineEdit(label="test image axes", value="YX", tooltip="OME letters, e.g. YX, ZYX, CYX")
        self.export_overwrite = CheckBox(text="overwrite an existing package", value=False)
        self.export_start, self.export_stop, self.progress, self.status = run_controls("Save as bioimage.io package")
        super().__init__(
            widgets=[
                self.teacher_file,
                self.load_teacher,
                self.teacher_info,
                self.student_file,
                self.load_student,
                self.student_info,
                self.shipped,
                self.load_shipped,
                self.device,
                self.export_role,
                self.export_file,
                self.export_name,
                self.export_authors,
                self.export_license,
                self.test_image,
                self.test_axes,
                self.export_overwrite,
                self.export_start,
                self.export_stop,
                self.progress,
                self.status,
            ]  # fmt: skip
        )
        self.task: Task | None = None
        self._suggested = self.export_file.value  # replaced on a role change or load unless the user edited it
        self.load_teacher.changed.connect(lambda: self.load("teacher", self.teacher_file.value))
        self.load_student.changed.connect(lambda: self.load("student", self.student_file.value))
        self.load_shipped.changed.connect(lambda: self.load_named(self.shipped.value))
        self.export_role.changed.connect(self._suggest_path)
        self.test_image.changed.connect(self._guess_axes)
        self.export_start.changed.connect(self.export)
        self.export_stop.changed.connect(lambda: self.task.stop() if self.task else None)
        SESSION.changed.connect(self._refresh)
        # the session outlives the widget: stop listening once Qt deletes it (e.g. when the viewer closes)
        self.native.destroyed.connect(lambda *_: SESSION.changed.disconnect(self._refresh, missing_ok=True))
        self._refresh("teacher")
        self._refresh("student")

    def load(self, role: str, path: str | Path) -> bool:
        """Load a checkpoint into the session; errors become notifications."""
        try:
            if not str(path) or Path(path).is_dir():
                raise SkdError(f"choose a {role} checkpoint file (.pt, or an official Restormer .pth)")
            ck = load_checkpoint(path)
        except SkdError as exc:
            report_error(exc)
            return False
        if role == "student" and ck.role != "student":
            report_error(SkdError(f"{Path(path).name} holds a {ck.role}, not a student; load it as the teacher"))
            return False
        SESSION.set(role, ck)
        return True

    def load_named(self, name: str) -> bool:
        """Load a shipped generalist as the teacher or the student, as its role says."""
        try:
            ck = shipped(name)
        except SkdError as exc:
            report_error(exc)
            return False
        SESSION.set(ck.role, ck)
        return True

    def _refresh(self, role: str) -> None:
        ck = SESSION.get(role)
        label = self.teacher_info if role == "teacher" else self.student_info
        if role == self.export_role.value:
            self._suggest_path()
        if ck is None:
            label.value = f"no {role} loaded"
            return
        info = describe_checkpoint(ck)
        label.value = "\n".join(f"{k}: {v}" for k, v in info.items())

    def _suggest_path(self, *_: Any) -> None:
        """Suggest a package path for the chosen model, unless the user typed one."""
        if self.export_file.value != self._suggested:
            return
        role = self.export_role.value
        ck = SESSION.get(role)
        self.export_file.value = package_path(role, ck.path if ck is not None else None)
        self._suggested = self.export_file.value

    def _guess_axes(self, name: str) -> None:
        if self.viewer is not None and name in self.viewer.layers:
            layer = self.viewer.layers[name]
            self.test_axes.value = default_axes(layer.ndim, getattr(layer, "rgb", False))

    def export_form(self) -> dict[str, Any]:
        return {"output": self.export_file.value, "name": self.export_name.value,
                "authors": self.export_authors.value, "license": self.export_license.value,
                "overwrite": self.export_overwrite.value}  # fmt: skip

    def export(self) -> Task | None:
        """Save the chosen model as a bioimage.io package in a worker thread (returns it, or None on bad input)."""
        role = self.export_role.value
        try:
            ck = SESSION.get(role)
            if ck is None:
                raise InputError(f"load a {role} above before saving it as a bioimage.io package")
            arguments = export_arguments(self.export_form())
            image = None
            if layer_array(self.viewer, self.test_image.value) is not None:
                image = layer_image(self.viewer, self.test_image.value, self.test_axes.value or "")
        except InputError as exc:
            report_error(exc)
            return None

        def work(progress, cancel):
            return export_bioimageio(ck, **arguments, test_image=image, progress=progress, cancel=cancel)

        self.task = Task(work, self._on_event, self._on_done, self._on_finally)
        self.export_start.enabled, self.export_stop.enabled = False, True
        self.progress.value = 0
        self.status.value = f"exporting the {role}..."
        self.task.start()
        return self.task

    def _on_event(self, e: ProgressEvent) -> None:
        self.progress.max = max(1, e.total)
        self.progress.value = min(e.step, e.total)
        self.status.value = e.message

    def _on_done(self, path: Path | None) -> None:
        if path is None:
            self.status.value = "stopped; nothing written"
            return
        notify(f"saved {path} (bioimage.io package, validated)")
        self.status.value = f"saved {path.name} (validated)"

    def _on_finally(self) -> None:
        self.export_start.enabled, self.export_stop.enabled = True, False
        self.task = None
