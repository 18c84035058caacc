"""Checkpoints: bitwise round trip, frozen fixture, refusal of code-carrying pickles, official imports."""

import json
import pickle

import pytest
import torch

from conftest import DATA
from napari_skd.checkpoint import (
    FORMAT,
    Checkpoint,
    import_restormer,
    load_checkpoint,
    model_hash,
    save_checkpoint,
)
from napari_skd.errors import CheckpointError
from napari_skd.models import build_model
from napari_skd.normalize import Normalization


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_round_trip_gives_bitwise_equal_outputs(tmp_path, spatial_dims):
    teacher = build_model("student-tiny", spatial_dims=spatial_dims)
    student = build_model("student-tiny", spatial_dims=spatial_dims).eval()
    norm = Normalization(low=3.0, high=1000.0)
    path = save_checkpoint(
        tmp_path / "s.pt", student, role="student", norm=norm, teacher=teacher, record={"steps": 7, "seed": 3}
    )
    ck = load_checkpoint(path)
    x = torch.rand(1, 1, *([12] * spatial_dims))
    with torch.no_grad():
        assert torch.equal(student(x), ck.model(x))
    assert ck.role == "student" and ck.norm == norm and ck.config == student.config
    assert ck.teacher_hash == model_hash(teacher) != ck.hash
    assert ck.record["steps"] == 7 and ck.record["seed"] == 3
    assert set(ck.record["versions"]) >= {"napari_skd", "torch", "numpy", "python"}
    assert not ck.model.training


def test_identity_normalisation_is_none(tmp_path):
    ck = load_checkpoint(save_checkpoint(tmp_path / "t.pt", build_model("student-tiny")))
    assert ck.norm is None and ck.role == "teacher" and ck.teacher_hash is None


def test_frozen_version_1_fixture_still_loads_and_computes_the_same():
    ck = load_checkpoint(DATA / "checkpoint_v1_student_tiny.pt")
    io = torch.load(DATA / "checkpoint_v1_student_tiny_io.pt", weights_only=True)
    assert ck.format_version == 1 and ck.role == "student"
    assert ck.norm == Normalization(pmin=1, pmax=99.8, low=12.0, high=240.0)
    assert len(ck.teacher_hash) == 64
    with torch.no_grad():
        torch.testing.assert_close(ck.model(io["input"]), io["output"], rtol=0, atol=1e-6)


class _Payload:
    """Unpickling this object would create a file: the attack a model file can carry."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_code_carrying_pickle_is_refused_and_never_runs(tmp_path):
    target = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "format_version": 1, "payload": _Payload(target)}, evil)
    assert not target.exists()
    with pytest.raises(CheckpointError, match="could run code on this computer"):
        load_checkpoint(evil)
    assert not target.exists()


def test_code_carrying_official_pth_is_refused(tmp_path):
    target = tmp_path / "pwned.txt"
    evil = tmp_path / "restormer.pth"
    with open(evil, "wb") as f:
        pickle.dump({"params": _Payload(target)}, f)
    with pytest.raises(CheckpointError, match="refused to load|not a PyTorch checkpoint"):
        import_restormer(evil)
    assert not target.exists()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b""), "damaged, truncated or not a PyTorch checkpoint"),
        (lambda p: p.write_text("hello"), "damaged, truncated or not a PyTorch checkpoint"),
        (lambda p: p.mkdir(), "is a folder"),
        (lambda p: torch.save({"a": torch.zeros(1)}, p), "not a napari-skd checkpoint"),
    ],
)
def test_bad_files_are_explained(tmp_path, make, message):
    path = tmp_path / "bad.pt"
    make(path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_missing_file_is_explained(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_checkpoint_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "t.pt", build_model("student-tiny"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="damaged, truncated"):
        load_checkpoint(path)


def _rewrite(path, **changes):
    obj = torch.load(path, weights_only=True)
    obj.update(changes)
    torch.save(obj, path)


def test_newer_format_version_asks_for_an_upgrade(tmp_path):
    path = save_checkpoint(tmp_path / "t.pt", build_model("student-tiny"))
    _rewrite(path, format_version=99)
    with pytest.raises(CheckpointError, match="format 99, newer than this napari-skd reads"):
        load_checkpoint(path)


def test_weights_that_do_not_fit_the_architecture_are_refused(tmp_path):
    path = save_checkpoint(tmp_path / "t.pt", build_model("student-tiny"))
    obj = torch.load(path, weights_only=True)
    cfg = json.loads(obj["config"])
    cfg["dim"] = 16
    _rewrite(path, config=json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not fit its architecture.*wrong shape"):
        load_checkpoint(path)


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path):
    save_checkpoint(tmp_path / "t.pt", build_model("student-tiny"))
    save_checkpoint(tmp_path / "t.pt", build_model("student-tiny"))
    assert [p.name for p in tmp_path.iterdir()] == ["t.pt"]


def test_official_file_loads_through_load_checkpoint_as_a_teacher():
    ck = load_checkpoint(DATA / "restormer_official_tiny.pth")
    assert isinstance(ck, Checkpoint) and ck.role == "teacher" and ck.norm is None


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(in_channels=3, out_channels=3, layernorm_type="WithBias"),
        dict(in_channels=1, out_channels=1, layernorm_type="BiasFree"),
    ],
)
def test_official_format_of_the_published_teacher_imports_strictly(tmp_path, kwargs):
    """An official-format file of the published size (RGB/WithBias and grey/BiasFree) imports with the same config."""
    model = build_model("teacher", **kwargs)
    path = tmp_path / "restormer.pth"
    torch.save({"params": model.state_dict()}, path)
    ck = import_restormer(path)
    assert ck.config == model.config
    assert model_hash(ck.model) == model_hash(model)


def test_dual_pixel_restormer_is_refused_with_a_reason(tmp_path):
    state = build_model("student-tiny").state_dict()
    state["skip_conv.weight"] = torch.zeros(16, 8, 1, 1)
    path = tmp_path / "dp.pth"
    torch.save({"params": state}, path)
    with pytest.raises(CheckpointError, match="dual-pixel"):
        import_restormer(path)
