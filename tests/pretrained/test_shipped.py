"""The shipped generalists: load by name, restore zero-shot with a real gain, refuse unknown names, manifest."""

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_skd import restore
from napari_skd.checkpoint import load_checkpoint
from napari_skd.errors import CheckpointError
from napari_skd.pretrained.manifest import read_manifest
from napari_skd.pretrained.names import PRETRAINED, WEIGHTS
from napari_skd.pretrained.natural import NATURAL_FILES
from napari_skd.samples import load_sample, sample_dir

NAMES = [f"pretrained:{n}" for n in PRETRAINED]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(1 / float(np.mean((a - b) ** 2)))


def noisy_nuclei(sigma: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    image, _ = load_sample("nuclei2d")
    image = image.astype(np.float32)[:256, :256]
    lo, hi = np.percentile(image, (1, 99.8))
    clean = (image - lo) / (hi - lo)
    return clean, (clean + sigma * np.random.default_rng(0).standard_normal(clean.shape)).astype(np.float32)


@pytest.mark.parametrize("name", NAMES)
def test_shipped_models_load_by_name_as_generalists(name):
    ck = load_checkpoint(name)
    assert ck.per_input and ck.record["pretrained"] and ck.record["name"] == name
    assert ck.role == ("student" if name.endswith("student") else "teacher")
    assert ck.record["corpus_hash"] == read_manifest()["corpus_hash"]
    assert ck.record["cpu_equivalent"]["cpu_hours"] >= 2  # at least 2 CPU-hours of training, 2-core equivalent


def test_unknown_names_are_refused_with_the_list():
    with pytest.raises(CheckpointError, match="pretrained:general-2d, pretrained:general-2d-cnn"):
        load_checkpoint("pretrained:general-3d")


@pytest.mark.parametrize("name", ["pretrained:general-2d-student", "pretrained:general-2d"])
def test_zero_shot_restore_gains_on_a_real_noisy_image(name):
    clean, noisy = noisy_nuclei()
    # in the image's own units (no checkpoint statistics): the generalist maps it by its own percentiles
    out = restore(noisy * 1000 + 100, name)
    restored = (out - 100) / 1000
    assert psnr(restored, clean) > psnr(noisy, clean) + 6  # 20 dB noisy input


def test_zero_shot_from_the_command_line_and_slice_by_slice_in_3d(tmp_path):
    clean, noisy = noisy_nuclei()
    tifffile.imwrite(tmp_path / "noisy.tif", np.stack([noisy, noisy[::-1]]) * 4000)
    out = tmp_path / "out.tif"
    cmd = [sys.executable, "-m", "napari_skd.cli", "restore", str(tmp_path / "noisy.tif"), "--axes", "ZYX",
           "--checkpoint", "pretrained:general-2d-student", "--output", str(out)]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    restored = tifffile.imread(out) / 4000
    assert restored.shape == (2, 256, 256)
    assert psnr(restored[0], clean) > psnr(noisy, clean) + 6
    assert psnr(restored[1], clean[::-1]) > psnr(noisy, clean) + 6


def test_manifest_lists_every_file_and_excludes_the_evaluation_images():
    manifest = read_manifest()
    corpus_hash = hashlib.sha256(json.dumps(manifest["corpus"], sort_keys=True).encode()).hexdigest()
    assert corpus_hash == manifest["corpus_hash"]
    for name, entry in manifest["models"].items():
        assert hashlib.sha256((WEIGHTS / entry["file"]).read_bytes()).hexdigest() == entry["sha256"], name
    used = {e["sha256"] for e in manifest["corpus"]["natural"]}
    assert all(e["licence"] for e in manifest["corpus"]["natural"])
    evaluation = [p for p in Path(sample_dir()).rglob("*") if p.is_file()]
    assert evaluation and not used & {hashlib.sha256(p.read_bytes()).hexdigest() for p in evaluation}
    excluded = ("cell", "ihc", "microaneurysms", "retina", "phantom")  # microscopy and medical photographs
    for path in [e["path"] for e in manifest["corpus"]["natural"]] + [f.path for f in NATURAL_FILES]:
        assert not any(Path(path).stem == x for x in excluded), path


def test_shipped_weights_fit_in_10_mb():
    assert sum((WEIGHTS / f).stat().st_size for f, _ in PRETRAINED.values()) <= 10e6


def test_a_shipped_teacher_checks_a_student_by_name(tmp_path):
    from napari_skd.restoration.target import read_qc

    clean, noisy = noisy_nuclei()
    out = restore(noisy * 1000 + 100, "pretrained:general-2d-student", tmp_path / "out.ome.zarr", chunks=128,
                  qc_teacher="pretrained:general-2d", qc_fraction=0.5)  # fmt: skip
    report = read_qc(out)
    assert len(report.blocks) == 2 and all(25 < b.psnr < 100 for b in report.blocks)  # close, not identical
