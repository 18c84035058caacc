"""Progress events and cancellation, shared by training and restoration (the GUI and CLI adapt them)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

#: What a long-running call is doing: preparing, labelling data with the teacher, training (a student, or a teacher
#: in "train" and, inside the Distil widget's two-stage run, "teacher"), restoring blocks; then "done" or "stopped".
Phase = Literal["prepare", "label", "train", "teacher", "restore", "qc", "done", "stopped"]


@dataclass
class ProgressEvent:
    """One report from a long-running core function."""

    phase: Phase
    step: int
    total: int
    losses: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    eta_s: float | None = None
    message: str = ""
    diagnostics: dict[str, float] = field(default_factory=dict)  # per-term values, gradient norms and cosines


ProgressFn = Callable[[ProgressEvent], None]
Cancel = threading.Event


class Eta:
    """Remaining time from the mean duration of the steps done so far in this run."""

    def __init__(self, start_step: int):
        self.t0, self.start = time.perf_counter(), start_step

    def __call__(self, step: int, total: int) -> float | None:
        done = step - self.start
        if done <= 0:
            return None
        return (time.perf_counter() - self.t0) / done * (total - step)


def emit(progress: ProgressFn | None, event: ProgressEvent) -> None:
    if progress is not None:
        progress(event)
