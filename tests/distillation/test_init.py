"""Training that starts from a checkpoint: init (teacher), student_init, keep_best, and a shipped teacher."""

import numpy as np
import pytest
import torch

from napari_skd import distill, train_teacher
from napari_skd.checkpoint import load_checkpoint
from napari_skd.errors import InputError
from napari_skd.samples import load_sample


def pair(size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    image, _ = load_sample("nuclei2d")
    clean = image[:size, :size].astype(np.float32) / 1000
    return clean, clean + np.random.default_rng(0).normal(0, 0.1, clean.shape).astype(np.float32)


def data(**extra) -> dict:
    clean, noisy = pair()
    return {"degraded": [noisy], "clean": [clean], "axes": "YX", "patch_size": 32, "batch_size": 2} | extra


def max_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k] - sb[k]).abs().max()) for k in sa)


def test_init_starts_from_the_shipped_weights_and_changes_them(tmp_path):
    shipped = load_checkpoint("pretrained:general-2d-cnn")
    out = train_teacher({"data": data(), "init": "pretrained:general-2d-cnn", "output": str(tmp_path / "t.pt"),
                         "train": {"steps": 2, "lr": 1e-5, "warmup_steps": 1, "keep_best": False}})  # fmt: skip
    tuned = load_checkpoint(out)
    assert tuned.config == shipped.config and not tuned.per_input  # now normalised by the data set's percentiles
    assert 0 < max_diff(tuned.model, shipped.model) < 1e-3  # two tiny steps away from the shipped weights
    assert tuned.record["init"]["checkpoint"] == "pretrained:general-2d-cnn"
    assert tuned.record["init"]["hash"] == shipped.hash


def test_keep_best_never_ends_below_the_start(tmp_path):
    shipped = load_checkpoint("pretrained:general-2d-student")
    out = train_teacher({"data": data(val_patches=4), "init": "pretrained:general-2d-student",
                         "output": str(tmp_path / "t.pt"),
                         "train": {"steps": 4, "lr": 0.2, "warmup_steps": 1, "val_every": 2}})  # fmt: skip
    tuned = load_checkpoint(out)
    kept = tuned.record["kept"]
    assert kept["step"] == 0 and kept["metric"] == "psnr"  # a rate of 0.2 wrecks the network: the start is kept
    assert max_diff(tuned.model, shipped.model) == 0
    last = tuned.record["validations"][-1]
    assert last["psnr"] < kept["score"] and kept["score"] == pytest.approx(kept["start_score"], abs=1e-4)


def test_student_init_and_a_shipped_teacher_by_name(tmp_path):
    shipped = load_checkpoint("pretrained:general-2d-student")
    out = distill({"data": data(), "teacher": "pretrained:general-2d", "student_init": "pretrained:general-2d-student",
                   "loss": {"method": "output-kd"}, "output": str(tmp_path / "s.pt"),
                   "train": {"steps": 2, "lr": 1e-4, "warmup_steps": 1, "keep_best": False}})  # fmt: skip
    student = load_checkpoint(out)
    assert student.record["init"]["checkpoint"] == "pretrained:general-2d-student"
    assert student.record["teacher_path"] == "pretrained:general-2d"
    assert student.teacher_hash == load_checkpoint("pretrained:general-2d").hash
    assert max_diff(student.model, shipped.model) > 0
    assert not student.per_input and student.norm.high < 1  # the data set's percentiles (the data lies in 0-1.3)


def test_init_of_another_kind_of_image_is_refused(tmp_path):
    clean, noisy = pair()
    job = {"data": {"degraded": [np.stack([noisy, noisy])], "axes": "CYX", "patch_size": 32, "batch_size": 2},
           "init": "pretrained:general-2d", "output": str(tmp_path / "t.pt"), "train": {"steps": 1}}  # fmt: skip
    with pytest.raises(InputError, match="2D model of 1 channel"):
        train_teacher(job)
