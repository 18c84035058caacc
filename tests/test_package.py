"""Packaging contract: cheap import, core free of napari/Qt, valid napari manifest, sample data present."""

import pkgutil
import subprocess
import sys

import numpy as np
import pytest

import napari_skd
from napari_skd.samples import SAMPLES, load_sample

CORE_MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(napari_skd.__path__, "napari_skd.")
    if not m.name.startswith("napari_skd._napari") and not m.name.endswith("__main__")
)


def _imported_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


def test_core_modules_exist():
    assert {"napari_skd.models", "napari_skd.checkpoint", "napari_skd.cli", "napari_skd.device"} <= set(CORE_MODULES)


def test_core_never_imports_napari_or_qt():
    mods = _imported_after("\n".join(f"import {m}" for m in CORE_MODULES))
    gui = sorted(
        m for m in mods if m.split(".")[0] in {"napari", "PyQt6", "PyQt5", "PySide6", "qtpy", "vispy", "magicgui"}
    )
    assert gui == []


def test_import_napari_skd_is_cheap():
    mods = _imported_after("import napari_skd")
    assert "torch" not in mods and "napari" not in mods


def test_manifest_validates_with_imports():
    npe2 = [sys.executable, "-m", "npe2", "validate", "napari-skd", "--imports"]
    result = subprocess.run(npe2, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


@pytest.mark.parametrize("name", list(SAMPLES))
def test_every_sample_loads_with_its_metadata(name):
    data, meta = load_sample(name)
    assert data.ndim == len(meta["axes"]) and data.size > 1000
    assert np.isfinite(data).all() and data.std() > 0


def test_ct_sample_is_in_hounsfield_units():
    data, meta = load_sample("ct_slice")
    assert meta["intensity_unit"] == "HU"
    assert data.min() < -500 < 500 < data.max()  # air/soft tissue below, bone above


def test_sample_data_is_documented():
    readme = (napari_skd.samples.sample_dir() / "README.md").read_text()
    for sample in SAMPLES.values():
        assert sample.file in readme
