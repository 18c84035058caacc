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
