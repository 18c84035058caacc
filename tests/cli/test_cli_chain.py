"""The whole headless chain on sample data, as a user runs it: the documented job files, then train-teacher ->
distill -> restore (TIFF in, OME-Zarr out) -> info -> export, and the package validates with bioimageio.spec."""

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import tifffile

from napari_skd.checkpoint import load_checkpoint
from napari_skd.io import open_image
from napari_skd.samples import load_sample

ROOT = Path(__file__).resolve().parents[2]


def cli(*args):
    r = subprocess.run([sys.executable, "-m", "napari_skd.cli", *map(str, args)], capture_output=True, text=True,
                       cwd=ROOT)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def test_documented_job_files_run_as_shown(tmp_path):
    """docs/examples/demo_*.yaml, exactly as in docs/cli.md and make demo, shortened with flags."""
    teacher, student = tmp_path / "teacher.pt", tmp_path / "student.pt"
    cli("train-teacher", "--config", "docs/examples/demo_teacher.yaml", "--steps", 2, "--output", teacher)
    cli("distill", "--config", "docs/examples/demo_distill.yaml", "--steps", 2, "--teacher", teacher,
        "--output", student)  # fmt: skip
    ck = load_checkpoint(student)
    assert ck.role == "student" and ck.record["method"] == "skd" and ck.record["steps"] == 2


def test_train_distill_restore_info_export_chain(tmp_path):
    image, _ = load_sample("nuclei2d")
    src = tmp_path / "cells.tif"
    tifffile.imwrite(src, image[:192, :160])
    before = src.read_bytes()
    common = ["--data.clean", src, "--data.axes", "YX", "--data.degradation.kind", "gaussian",
              "--data.patch-size", 32, "--data.batch-size", 2, "--steps", 3]  # fmt: skip
    cli("train-teacher", *common, "--model", "student-tiny", "--output", tmp_path / "t.pt")
    cli("distill", *common, "--teacher", tmp_path / "t.pt", "--student", "unet-xs", "--output", tmp_path / "s.pt")
    out = cli("restore", src, "--checkpoint", tmp_path / "s.pt", "--output", tmp_path / "r.ome.zarr", "--tile", 64)
    assert "restored: " in out
    restored = open_image(tmp_path / "r.ome.zarr")
    assert restored.axes == "YX" and restored.shape == (192, 160)
    assert np.isfinite(np.asarray(restored.data)).all()
    info = cli("info", tmp_path / "s.pt", "--size", 64)
    assert "role: student" in info and "params: " in info and "flops: " in info
    cli("export", tmp_path / "s.pt", "--output", tmp_path / "s.zip", "--no-onnx",
        "--author", "Jane Doe; affiliation=Imaging Facility; orcid=0000-0002-1825-0097")  # fmt: skip
    from bioimageio.spec import load_description

    descr = load_description(tmp_path / "s.zip", perform_io_checks=False)
    assert descr.validation_summary.status in ("passed", "valid-format")
    assert [(a.name, a.affiliation) for a in descr.authors] == [("Jane Doe", "Imaging Facility")]
    package = zipfile.ZipFile(tmp_path / "s.zip")
    assert not any(src.name.encode() in package.read(n) for n in package.namelist())  # training file names withheld
    cli("export", tmp_path / "s.pt", "--output", tmp_path / "s.zip", "--no-onnx", "--include-paths", "--overwrite")
    assert src.name.encode() in zipfile.ZipFile(tmp_path / "s.zip").read("training_record.json")
    assert src.read_bytes() == before
