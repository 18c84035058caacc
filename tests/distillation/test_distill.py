"""Teacher training and distillation end to end on tiny configs: learning, gradients, determinism, exact resume."""

import threading

import dask.array as da
import numpy as np
import pytest
import torch

from napari_skd import distill, train_teacher
from napari_skd.checkpoint import load_checkpoint, save_checkpoint
from napari_skd.data.degrade import DegradationConfig
from napari_skd.data.sampler import PatchSampler
from napari_skd.data.stats import estimate_percentiles
from napari_skd.distillation.config import METHODS, LossConfig
from napari_skd.distillation.objectives import DistillObjective, StudentWithProjections, blind_spot
from napari_skd.errors import InputError
from napari_skd.models import build_model
from napari_skd.samples import load_sample


@pytest.fixture(scope="module")
def clean2d():
    image, _ = load_sample("nuclei2d")
    return image[128:256, 128:256].astype(np.float32)


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory, clean2d):
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    job = _teacher_job(clean2d, path, steps=8)
    return train_teacher(job)


def _teacher_job(clean, output, steps=8, **train):
    return {
        "data": {"clean": clean, "axes": "YX", "degradation": {"kind": "gaussian", "sigma": 0.1},
                 "patch_size": 32, "batch_size": 4, "val_patches": 2},
        "model": "student-tiny", "output": str(output),
        "train": {"steps": steps, "lr": 2e-3, "warmup_steps": 2, "val_every": 4, **train},
    }  # fmt: skip


def _distill_job(clean, teacher, output, method="skd", steps=6, **train):
    return {
        "data": {"clean": clean, "axes": "YX", "degradation": {"kind": "gaussian", "sigma": 0.1},
                 "patch_size": 32, "batch_size": 2, "val_patches": 2},
        "teacher": str(teacher), "student": "student-tiny", "output": str(output),
        "loss": {"method": method, "max_positions": 64, "cl_warmup": 0, "alpha3": 0.1},
        "train": {"steps": steps, "lr": 1e-3, "warmup_steps": 1, "val_every": 3, **train},
    }  # fmt: skip


def _losses(events):
    return [e.losses["loss"] for e in events if e.phase == "train"]


def test_supervised_teacher_learns_and_records_everything(tmp_path, clean2d):
    events = []
    path = train_teacher(_teacher_job(clean2d, tmp_path / "t.pt", steps=30), progress=events.append)
    ck = load_checkpoint(path)
    assert ck.role == "teacher" and ck.norm is not None
    losses = _losses(events)
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    assert ck.record["steps"] == 30 and ck.record["completed"] and ck.record["mode"].startswith("supervised")
    assert {"psnr", "ssim"} <= set(ck.record["metrics"])
    assert events[-1].phase == "done" and events[-2].eta_s is not None
    assert not (tmp_path / "t.pt.state").exists()


def test_self_supervised_teacher_from_noisy_data_only(tmp_path, clean2d):
    rng = np.random.default_rng(0)
    noisy = clean2d + rng.normal(0, 20, clean2d.shape).astype(np.float32)
    job = {"data": {"degraded": noisy, "axes": "YX", "patch_size": 32, "batch_size": 4, "val_patches": 2},
           "model": "student-tiny", "output": str(tmp_path / "n2v.pt"),
           "train": {"steps": 20, "lr": 2e-3, "warmup_steps": 2, "val_every": 10}}  # fmt: skip
    events = []
    ck = load_checkpoint(train_teacher(job, progress=events.append))
    assert "Noise2Void" in ck.record["mode"]
    losses = _losses(events)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    said = [e.message for e in events if e.phase == "prepare"]
    assert any("self-supervised (Noise2Void)" in m and "CPU" in m for m in said), said  # mode and device, up front
    # a validation figure without clean data: Noise2Void's loss on held-out patches with a fixed mask
    scores = [v["n2v_mse"] for v in ck.record["validations"]]
    assert len(scores) == 2 and all(np.isfinite(scores)) and ck.record["metrics"]["n2v_mse"] == scores[-1]


def test_blind_spot_masks_the_requested_fraction_with_neighbours():
    x = torch.arange(2 * 16 * 16, dtype=torch.float32).reshape(2, 1, 16, 16)
    masked, mask = blind_spot(x, 0.05, np.random.default_rng(0))
    assert mask.sum().item() == round(2 * 256 * 0.05)
    changed = masked != x
    assert bool((changed <= mask).all())  # only masked pixels change
    assert bool(changed[mask].all())  # every masked pixel differs (neighbour values are distinct here)
    diff = (masked - x)[mask].abs()
    rows, cols = diff // 16, diff % 16
    assert bool(((rows <= 2) & ((cols <= 2) | (cols >= 14))).all())  # a neighbour within radius 2


@pytest.mark.parametrize("method", METHODS)
def test_every_method_distils_a_student(tmp_path, clean2d, teacher_ckpt, method):
    events = []
    path = distill(_distill_job(clean2d, teacher_ckpt, tmp_path / "s.pt", method=method), progress=events.append)
    ck = load_checkpoint(path)
    assert ck.role == "student" and ck.teacher_hash == load_checkpoint(teacher_ckpt).hash
    assert ck.record["method"] == method and ck.record["steps"] == 6
    assert {"psnr", "psnr_teacher"} <= set(ck.record["metrics"])
    parts = events[-2].losses
    assert ("cl" in parts) == (method in ("skd", "skd-no-mca"))
    assert ("gk" in parts) == (method in ("skd", "skd-no-mca", "skd-no-cl"))


def test_gradients_reach_only_the_student_and_projections(clean2d):
    teacher = build_model("teacher-tiny").eval()  # wider than the student: projections are learned 1x1 convs
    for p in teacher.parameters():
        p.requires_grad_(False)
    volume = da.from_array(clean2d[None, None, None])  # (S, C, Z, Y, X)
    norm = estimate_percentiles([volume])
    sampler = PatchSampler(None, [volume], norm, spatial_dims=2, patch_size=32, degradation=DegradationConfig(),
                           val_fraction=0)  # fmt: skip
    cfg = LossConfig(max_positions=64, cl_warmup=0, alpha3=0.1)
    module = StudentWithProjections(build_model("student-tiny"), teacher.config.feature_channels, cfg.levels, "skd")
    loss, parts = DistillObjective(teacher, cfg, sampler, 2, torch.device("cpu"))(module, 0)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.student.parameters())
    projected = [p for p in module.projections.parameters()]
    assert projected and all(p.grad is not None and p.grad.abs().sum() > 0 for p in projected)
    assert set(parts) == {"rec", "gk", "cl"}


def test_same_seed_same_run(tmp_path, clean2d, teacher_ckpt):
    runs = []
    for name in ("a", "b"):
        events = []
        distill(_distill_job(clean2d, teacher_ckpt, tmp_path / f"{name}.pt"), progress=events.append)
        runs.append(_losses(events))
    assert runs[0] == runs[1]
    a, b = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "b.pt")
    assert a.hash == b.hash


def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(tmp_path, clean2d, teacher_ckpt):
    full = []
    distill(_distill_job(clean2d, teacher_ckpt, tmp_path / "full.pt", steps=6), progress=full.append)

    cancel = threading.Event()
    first = []

    def stop_at_3(event):
        first.append(event)
        if event.phase == "train" and event.step == 3:
            cancel.set()

    job = _distill_job(clean2d, teacher_ckpt, tmp_path / "part.pt", steps=6)
    distill(job, progress=stop_at_3, cancel=cancel)
    assert first[-1].phase == "stopped"
    stopped = load_checkpoint(tmp_path / "part.pt")
    assert stopped.record["steps"] == 3 and not stopped.record["completed"]  # Stop leaves a usable checkpoint
    assert (tmp_path / "part.pt.state").exists()
    second = []
    distill(job, progress=second.append)
    assert _losses(first) + _losses(second) == _losses(full)
    assert load_checkpoint(tmp_path / "part.pt").hash == load_checkpoint(tmp_path / "full.pt").hash


def test_3d_teacher_and_student_learn(tmp_path):
    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[:24, :48, :48]
    clean = (100 * (np.sin(z / 3) + np.cos(y / 4) * np.sin(x / 5)) + 300).astype(np.float32)
    job = {"data": {"clean": clean, "axes": "ZYX", "degradation": {"kind": "rician", "sigma": 0.1},
                    "patch_size": 16, "batch_size": 2, "val_patches": 1, "val_fraction": 0.34},
           "model": "student-tiny", "spatial_dims": 3, "output": str(tmp_path / "t3.pt"),
           "train": {"steps": 12, "lr": 2e-3, "warmup_steps": 1, "val_every": 6}}  # fmt: skip
    events = []
    teacher = train_teacher(job, progress=events.append)
    losses = _losses(events)
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    djob = {"data": job["data"], "teacher": str(teacher), "student": "unet-xs", "output": str(tmp_path / "s3.pt"),
            "loss": {"max_positions": 64}, "train": {"steps": 4, "val_every": 2}}  # fmt: skip
    ck = load_checkpoint(distill(djob))
    assert ck.config.spatial_dims == 3 and ck.config.arch == "unet"
    del rng


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda j: j["data"].update(clean=np.full((64, 64), np.nan, np.float32)), "NaN or Inf"),
        (lambda j: j["data"].update(patch_size=256), "larger than the image"),
        (lambda j: j["data"].update(degraded=np.zeros((50, 50), np.float32)), "differs from clean shape"),
        (lambda j: j["loss"].update(levels=["enc9"]), "unknown feature levels"),
        (lambda j: j["train"].update(steps=0), "greater than or equal to 1"),
        (lambda j: j.update(student="giant"), "unknown model preset 'giant'"),
        (
            lambda j: j["loss"].update(method="scratch") or j["data"].update(clean=None, degraded=np.ones((64, 64))),
            "learns from ground truth only",
        ),
    ],
)
def test_bad_input_is_refused_before_training(tmp_path, clean2d, teacher_ckpt, change, message):
    job = _distill_job(clean2d, teacher_ckpt, tmp_path / "bad.pt")
    change(job)
    with pytest.raises(InputError, match=message):
        distill(job)
    assert not (tmp_path / "bad.pt").exists()


def test_finished_output_is_not_overwritten(tmp_path, clean2d, teacher_ckpt):
    out = tmp_path / "done.pt"
    save_checkpoint(out, build_model("student-tiny"))
    before = out.read_bytes()
    with pytest.raises(InputError, match="already exists"):
        distill(_distill_job(clean2d, teacher_ckpt, out))
    assert out.read_bytes() == before


def test_two_channel_data_gets_bounds_per_channel_through_training_restore_and_export(tmp_path, clean2d):
    """A channel at 0..255 beside one at 10000..60000: each keeps its own percentiles, from training to the
    restored intensities and the exported package's scale_linear along the channel axis."""
    from napari_skd import restore
    from napari_skd.export import check_package, export_bioimageio

    two = np.stack([clean2d, 10000 + 200 * clean2d]).astype(np.float32)  # C, Y, X
    job = {"data": {"clean": two, "axes": "CYX", "degradation": {"kind": "gaussian", "sigma": 0.05},
                    "patch_size": 32, "batch_size": 2, "val_patches": 2},
           "model": "unet-xs", "output": str(tmp_path / "t.pt"), "train": {"steps": 3, "val_every": 3}}  # fmt: skip
    ck = load_checkpoint(train_teacher(job))
    assert ck.norm.channels == 2
    for c in range(2):  # small data: exact percentiles of each channel
        lo, hi = np.percentile(two[c].astype(np.float64), (1.0, 99.8))
        assert (ck.norm.low[c], ck.norm.high[c]) == pytest.approx((lo, hi), rel=1e-4, abs=1e-3)
    out = restore(two, ck, axes="CYX", tile=32, overlap=4, chunks=64)
    assert 5000 < float(np.median(out[1])) < 65000 and float(np.median(out[0])) < 1000  # each in its own units
    with pytest.raises(InputError, match="channel 1: "):  # channel 1 ten times brighter: far from its own range
        restore(np.stack([two[0], 10 * two[1]]), ck, axes="CYX", tile=32, overlap=4, chunks=64)
    package = export_bioimageio(ck, tmp_path / "t.zip", onnx=False)
    assert set(check_package(package)) == {"torchscript"}
