import hashlib
from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    torch.set_num_threads(2)


def file_digest(path: Path) -> str:
    """SHA-256 of a file or of every file below a folder (to prove inputs are unchanged)."""
    h = hashlib.sha256()
    paths = sorted(p for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() else [Path(path)]
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def untrained(spec, **kwargs) -> torch.nn.Module:
    """A network with torch's default random initialisation in every layer.

    A fresh U-Net starts as the identity (its output layer is zero), which would make a comparison of tiled and
    whole-image outputs, or of an export and its source, pass whatever the code did.
    """
    from napari_skd.models import build_model

    model = build_model(spec, **kwargs)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.Conv3d):
            m.reset_parameters()
    return model


class Damaged(torch.nn.Module):
    """A model plus a large error (0.5 in normalised units) wherever its input is brighter than 0.9: a student that
    departs from its teacher in one known region, for the fidelity checks."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner, self.config, self.multiple = inner, inner.config, inner.multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) + 0.5 * (x > 0.9)


@pytest.fixture
def fresh_session():
    """No teacher or student loaded in the napari session, before and after the test."""
    from napari_skd._napari._session import SESSION

    SESSION.teacher = SESSION.student = None
    yield SESSION
    SESSION.teacher = SESSION.student = None


@pytest.fixture
def errors(monkeypatch):
    """Messages shown as napari error notifications."""
    import napari_skd._napari._qt as qt

    shown = []
    monkeypatch.setattr(qt, "show_error", shown.append)
    return shown
