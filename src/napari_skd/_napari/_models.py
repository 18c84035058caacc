"""Models widget: load a teacher and a student checkpoint (or an official Restormer .pth) and show what they are."""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import Container, FileEdit, Label, PushButton

from ..checkpoint import load_checkpoint
from ..describe import describe_checkpoint
from ..device import resolve_device
from ..errors import SkdError
from ._qt import report_error
from ._session import SESSION

FILTER = "*.pt *.pth *.ckpt"


class ModelsWidget(Container):
    """Teacher and student pickers, their summaries, and the device napari-skd will use."""

    def __init__(self, napari_viewer=None):
        self.viewer = napari_viewer
        self.teacher_file = FileEdit(label="teacher", filter=FILTER, tooltip="napari-skd checkpoint or Restormer .pth")
        self.load_teacher = PushButton(text="Load teacher")
        self.teacher_info = Label(value="no teacher loaded")
        self.student_file = FileEdit(label="student", filter=FILTER)
        self.load_student = PushButton(text="Load student")
        self.student_info = Label(value="no student loaded")
        self.device = Label(label="device", value=resolve_device("auto")[1])
        super().__init__(
            widgets=[
                self.teacher_file,
                self.load_teacher,
                self.teacher_info,
                self.student_file,
                self.load_student,
                self.student_info,
                self.device,
            ]  # fmt: skip
        )
        self.load_teacher.changed.connect(lambda: self.load("teacher", self.teacher_file.value))
        self.load_student.changed.connect(lambda: self.load("student", self.student_file.value))
        SESSION.changed.connect(self._refresh)
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

    def _refresh(self, role: str) -> None:
        ck = SESSION.get(role)
        label = self.teacher_info if role == "teacher" else self.student_info
        if ck is None:
            label.value = f"no {role} loaded"
            return
        info = describe_checkpoint(ck)
        label.value = "\n".join(f"{k}: {v}" for k, v in info.items())
