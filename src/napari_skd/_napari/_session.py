"""The teacher and student loaded in this napari session, shared by the widgets."""

from __future__ import annotations

from psygnal import Signal

from ..checkpoint import Checkpoint, load_checkpoint
from ..pretrained import CNN_TEACHER, STUDENT, TEACHER


class Session:
    """Holds the loaded checkpoints; ``changed`` fires with the role that changed."""

    changed = Signal(str)

    def __init__(self) -> None:
        self.teacher: Checkpoint | None = None
        self.student: Checkpoint | None = None

    def set(self, role: str, ck: Checkpoint | None) -> None:
        setattr(self, role, ck)
        self.changed.emit(role)

    def get(self, role: str) -> Checkpoint | None:
        return getattr(self, role)


SESSION = Session()

#: Shipped generalists offered by the widgets, the student first (the zero-shot default).
SHIPPED: tuple[str, ...] = (STUDENT, CNN_TEACHER, TEACHER)
_shipped: dict[str, Checkpoint] = {}


def shipped(name: str) -> Checkpoint:
    """A shipped generalist, loaded once per session."""
    if name not in _shipped:
        _shipped[name] = load_checkpoint(name)
    return _shipped[name]
