"""Small Qt helpers: run a core function in a napari thread worker and deliver its progress on the GUI thread;
a dock form that scrolls."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from magicgui.widgets import Container, Label, ProgressBar, PushButton, Widget
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import QFrame, QScrollArea, QSizePolicy

from ..errors import SkdError
from ..progress import ProgressEvent


class _Bridge(QObject):
    """Signals emitted from the worker thread, received (queued) on the GUI thread."""

    event = Signal(object)


class Task:
    """One long-running call: ``fn(progress=..., cancel=...)`` in a worker thread with a Stop flag.

    ``on_event`` receives every ``ProgressEvent`` on the GUI thread; ``on_done(result)`` on success;
    ``on_finally()`` always (success, error or stop), so no widget is left in a running state.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        on_event: Callable[[ProgressEvent], None],
        on_done: Callable[[Any], None],
        on_finally: Callable[[], None],
    ):
        self.cancel = threading.Event()
        self._bridge = _Bridge()
        self._bridge.event.connect(on_event)
        self.worker = create_worker(
            fn, progress=self._bridge.event.emit, cancel=self.cancel, _start_thread=False, _ignore_errors=True
        )  # errors are shown by report_error, not re-raised
        self.worker.returned.connect(on_done)
        self.worker.errored.connect(report_error)
        self.worker.finished.connect(on_finally)

    def start(self) -> None:
        _import_torch_parts()
        self.worker.start()

    def stop(self) -> None:
        self.cancel.set()


@functools.cache
def _import_torch_parts() -> None:
    """Import torch's lazily loaded parts on the GUI thread: importing them first inside a worker thread while the
    GUI thread runs can fail half-way (seen as "'prims' object has no attribute 'sum'")."""
    import torch  # here on purpose: see the docstring
    import torch.utils.flop_counter  # noqa: F401

    param = torch.zeros(1, requires_grad=True)
    param.sum().backward()
    torch.optim.AdamW([param]).step()


def report_error(exc: BaseException) -> None:
    """Show our errors' messages as notifications; anything else as an internal error."""
    if isinstance(exc, SkdError):
        show_error(str(exc))
    else:
        show_error(f"napari-skd internal error: {type(exc).__name__}: {exc}")


def run_controls(action: str) -> tuple[PushButton, PushButton, ProgressBar, Label]:
    """The start button (labelled ``action``), Stop button, progress bar and status line of a long-running widget."""
    stop = PushButton(text="Stop", enabled=False)
    return PushButton(text=action), stop, ProgressBar(label="progress", value=0, max=1), wrapped_label()


def show_progress(progress: ProgressBar, status: Label, e: ProgressEvent, what: str) -> None:
    """A progress event in the bar and the status line: its message, or ``what`` then step/total and the time left."""
    progress.max = max(1, e.total)
    progress.value = min(e.step, e.total)
    eta = f", {e.eta_s:.0f} s left" if e.eta_s is not None else ""
    status.value = e.message or f"{what}{e.step}/{e.total}{eta}"


def wrapped_label(**kwargs) -> Label:
    """A label whose long text wraps at the form's width, so that a status line never widens its dock."""
    label = Label(**kwargs)
    label.native.setWordWrap(True)
    label.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
    return label


def notify(message: str) -> None:
    show_info(message)


class ScrollingForm(Container):
    """A dock's form (``self.body``) inside a vertical scroll area, so that a tall form fits a small screen.

    napari docks a magicgui widget's ``.native``, which for ``Container(scrollable=True)`` is the inner widget
    without its scroll area; so the scroll area is made here, inside ``.native``.
    """

    def __init__(self, widgets: list[Widget]):
        self.body = Container(widgets=widgets)
        super().__init__(widgets=[self.body], labels=False)
        self.margins = (0, 0, 0, 0)
        self.body.native.layout().addStretch()  # spare height below the form, not between its rows
        area = QScrollArea()
        area.setWidgetResizable(True)
        area.setFrameShape(QFrame.Shape.NoFrame)
        area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        area.setWidget(self.body.native)  # moves the body from this container's layout into the scroll area
        area.setMinimumWidth(self.body.native.minimumSizeHint().width() + area.verticalScrollBar().sizeHint().width())
        self.native.layout().addWidget(area)
        self.scroll_area = area
