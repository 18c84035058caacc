"""Jobs from YAML through the command line, including a 2-process torch DDP run (gloo) launched with torchrun."""

import subprocess
import sys

import numpy as np
import pytest
import tifffile
import yaml

from napari_skd.checkpoint import load_checkpoint
from napari_skd.samples import load_sample


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    root = tmp_path_factory.mktemp("jobs")
    image, _ = load_sample("nuclei2d")
    tifffile.imwrite(root / "crop.tif", image[128:256, 128:256])
    data = {"clean": str(root / "crop.tif"), "axes": "YX", "degradation": {"kind": "gaussian", "sigma": 0.1},
            "patch_size": 32, "batch_size": 2, "val_patches": 2}  # fmt: skip
    teacher = {"data": data, "model": "student-tiny", "output": str(root / "teacher.pt"),
               "train": {"steps": 4, "val_every": 2}}  # fmt: skip
    student = {"data": data, "teacher": str(root / "teacher.pt"), "student": "student-tiny",
               "loss": {"max_positions": 64}, "output": str(root / "student.pt"),
               "train": {"steps": 4, "val_every": 2, "device": "cpu"}}  # fmt: skip
    (root / "teacher.yaml").write_text(yaml.safe_dump(teacher))
    (root / "student.yaml").write_text(yaml.safe_dump(student))
    return root


def cli(*args, launcher=()):
    cmd = [sys.executable, *launcher, "-m", "napari_skd.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)  # a hung DDP run fails, not blocks


def test_yaml_jobs_train_a_teacher_then_distil(jobs):
    before = (jobs / "crop.tif").read_bytes()
    r = cli("train-teacher", "--config", str(jobs / "teacher.yaml"))
    assert r.returncode == 0, r.stderr
    assert "[done] 4/4" in r.stdout and "psnr=" in r.stdout
    r = cli("distill", "--config", str(jobs / "student.yaml"), "--output", str(jobs / "single.pt"))
    assert r.returncode == 0, r.stderr
    assert load_checkpoint(jobs / "single.pt").record["world_size"] == 1
    assert (jobs / "crop.tif").read_bytes() == before  # inputs are read-only to us


def test_torchrun_ddp_with_two_gloo_processes(jobs):
    if not (jobs / "teacher.pt").exists():
        assert cli("train-teacher", "--config", str(jobs / "teacher.yaml")).returncode == 0
    torchrun = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")
    r = cli("distill", "--config", str(jobs / "student.yaml"), "--output", str(jobs / "ddp.pt"), launcher=torchrun)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.splitlines().count(f"saved {jobs / 'ddp.pt'}") == 1  # only rank 0 reports and writes
    ck = load_checkpoint(jobs / "ddp.pt")
    assert ck.record["world_size"] == 2 and ck.record["completed"]
    assert np.isfinite(ck.record["metrics"]["psnr"])


def test_torchrun_ddp_with_a_time_budget_stops_every_rank_together(jobs):
    """Rank 0's clock decides (a broadcast each step): no rank waits forever for the others."""
    if not (jobs / "teacher.pt").exists():
        assert cli("train-teacher", "--config", str(jobs / "teacher.yaml")).returncode == 0
    job = yaml.safe_load((jobs / "student.yaml").read_text())
    job["train"] = {"max_time": "3s", "val_every": 1000, "device": "cpu"}
    (jobs / "timed.yaml").write_text(yaml.safe_dump(job))
    torchrun = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")
    r = cli("distill", "--config", str(jobs / "timed.yaml"), "--output", str(jobs / "timed.pt"), launcher=torchrun)
    assert r.returncode == 0, r.stderr[-2000:]
    rec = load_checkpoint(jobs / "timed.pt").record
    assert rec["world_size"] == 2 and rec["completed"] and rec["seconds"] >= 3 and rec["max_time"] == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("data: {clean: x.tif}\nmodel: teacher\noutput: o.pt\nbogus: 1\n", "bogus: Extra inputs are not permitted"),
        (
            "data: {clean: x.tif, degradation: {kind: gaussian}}\noutput: o.pt\ntrain: {steps: many}\n",
            "train.steps: Input should be a valid integer",
        ),
        ("- just\n- a list\n", "must hold a mapping"),
        ("data: {clean: missing.tif, degradation: {kind: gaussian}}\noutput: o.pt\n", "file not found"),
    ],
)
def test_bad_job_files_exit_2_with_the_reason(tmp_path, content, message):
    job = tmp_path / "job.yaml"
    job.write_text(content)
    r = cli("train-teacher", "--config", str(job))
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr


def _fields(model, prefix=""):
    from pydantic import BaseModel

    from napari_skd.cli.flags import _unwrap

    for name, field in model.model_fields.items():
        t, _ = _unwrap(field.annotation)
        if name == "version":
            continue
        if isinstance(t, type) and issubclass(t, BaseModel):
            yield from _fields(t, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}".replace("_", "-")


@pytest.mark.parametrize("command", ["train-teacher", "distill"])
def test_help_lists_every_job_option_with_its_default(command):
    from napari_skd.distillation.config import DistillJob, TeacherJob

    model = TeacherJob if command == "train-teacher" else DistillJob
    out = " ".join(cli(command, "--help").stdout.split())  # undo line wrapping
    for flag in _fields(model):
        assert f"--{flag}" in out, flag
    assert "(default: 64)" in out  # patch size
    assert "(default: 256)" in out or command == "train-teacher"  # max_positions


def test_flags_override_the_job_file(jobs):
    r = cli("train-teacher", "--config", str(jobs / "teacher.yaml"), "--output", str(jobs / "flags.pt"),
            "--train.steps", "2", "--data.patch-size", "16", "--no-data.augment")  # fmt: skip
    assert r.returncode == 0, r.stderr
    ck = load_checkpoint(jobs / "flags.pt")
    assert ck.record["steps"] == 2
    assert ck.record["data"]["patch_size"] == 16 and ck.record["data"]["augment"] is False


def test_a_job_from_flags_alone(jobs):
    r = cli("train-teacher", "--data.clean", str(jobs / "crop.tif"), "--data.axes", "YX",
            "--data.degradation.kind", "gaussian", "--data.patch-size", "32", "--data.batch-size", "2",
            "--model", "student-tiny", "--steps", "2", "--output", str(jobs / "bare.pt"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert load_checkpoint(jobs / "bare.pt").record["data"]["degradation"]["kind"] == "gaussian"


def test_the_complete_job_in_docs_cli_md_is_valid_and_shows_every_loss_setting():
    from pathlib import Path

    from napari_skd.distillation.config import DistillJob, LossConfig, TrainConfig

    text = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    block = text[text.index("version: 1\ndata:") :]
    job = yaml.safe_load(block[: block.index("```")])
    assert set(job["loss"]) == set(LossConfig.model_fields) and set(job["train"]) == set(TrainConfig.model_fields)
    job["data"].update(degraded=None, clean="x.tif", degradation={"kind": "gaussian"})
    assert DistillJob.model_validate(job).loss == LossConfig(**job["loss"])
