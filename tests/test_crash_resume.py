"""Crashes and interruptions of the command line: SIGKILL at seeded random points, then a rerun, gives the bytes (and
for training the losses and weights) of an uninterrupted run; Ctrl-C stops cleanly with exit code 130.

Every run is a real ``napari-skd`` process (``napari_skd.cli.main``) started through a small wrapper that only adds a
trigger: it kills the process, or waits for the test to send it SIGINT, at a chosen point, and logs every progress
event (step and losses) to a file. The kill points are drawn with a seeded generator:

- ``before-record``: block k's chunk is written but the kill comes before the record notes it;
- ``after-record``: just after block k is recorded;
- ``mid-write``: half of block k's chunk is in zarr's temporary ``.partial`` file;
- ``progress``: at the k-th progress event (the writer thread may have recorded a few more blocks);
- for training, at the progress event of step k (state saved every 2 steps: k may fall on or between saves).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml

from conftest import file_digest, untrained
from napari_skd.checkpoint import load_checkpoint, save_checkpoint
from napari_skd.models import build_model
from napari_skd.normalize import Normalization
from napari_skd.restoration.target import LOCK_NAME, read_record

WRAPPER = r"""
import json, os, signal, sys, time

mode, k, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
count = 0


def die():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


if mode in ("before-record", "after-record"):
    from napari_skd.restoration.target.zarr_store import ZarrTarget

    mark_done = ZarrTarget.mark_done

    def marked(self, key):
        global count
        count += 1
        if mode == "before-record" and count == k:
            die()
        mark_done(self, key)
        if mode == "after-record" and count == k:
            die()

    ZarrTarget.mark_done = marked
elif mode == "mid-write":
    import zarr.storage._local as local

    put = local._put

    def half(path, value, exclusive=False):
        global count
        if "/c/" in path.as_posix():
            count += 1
            if count == k:
                raw = bytes(value.as_buffer_like())
                with local._atomic_write(path, "wb") as f:
                    f.write(raw[: len(raw) // 2])
                    f.flush()
                    die()
        return put(path, value, exclusive=exclusive)

    local._put = half

import napari_skd.cli.commands as commands

printer = commands.progress_printer


def hooked(quiet=False):
    show = printer(quiet)

    def on_event(e):
        if show is not None:
            show(e)
        if e.phase not in ("restore", "train"):
            return
        with open(log, "a") as f:
            f.write(json.dumps({"phase": e.phase, "step": e.step, "losses": e.losses, "message": e.message}) + "\n")
        if e.step != k:
            return
        if mode == "progress":
            die()
        if mode == "sigint":  # tell the test, then wait for its SIGINT (the CLI's own handler receives it)
            got = []
            handler = signal.getsignal(signal.SIGINT)

            def noted(signum, frame):
                got.append(signum)
                handler(signum, frame)

            signal.signal(signal.SIGINT, noted)
            print(f"READY {k}", flush=True)
            for _ in range(1200):
                if got:
                    break
                time.sleep(0.05)

    return on_event


commands.progress_printer = hooked
from napari_skd.cli import main

sys.exit(main(sys.argv[4:]))
"""


#: One torch thread per process: the same arithmetic in every run, and no OpenMP threads spinning against each other
#: on a busy machine (two threads on two loaded cores made a 10-step distillation 16x slower).
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(mode: str, k: int, log: Path, *args: str) -> subprocess.CompletedProcess:
    """``napari-skd ARGS`` with a trigger (``none`` for a plain run)."""
    command = [sys.executable, "-c", WRAPPER, mode, str(k), str(log), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=ENV)


def interrupt(k: int, log: Path, *args: str) -> subprocess.CompletedProcess:
    """``napari-skd ARGS``, sent SIGINT from here once it reports step (or block) ``k``."""
    command = [sys.executable, "-c", WRAPPER, "sigint", str(k), str(log), *map(str, args)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV) as proc:
        for line in proc.stdout:
            if line.startswith(f"READY {k}"):
                proc.send_signal(signal.SIGINT)
                break
        out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


# ---------------------------------------------------------------- restoration


@pytest.fixture(scope="module")
def restoration(tmp_path_factory):
    """A 64 x 96 TIFF, a tiny model, and the output of an uninterrupted run (24 blocks of 16 x 16)."""
    root = tmp_path_factory.mktemp("restore")
    rng = np.random.default_rng(3)
    src = root / "in.tif"
    tifffile.imwrite(src, (rng.random((64, 96)) * 200).astype(np.float32))
    torch.manual_seed(0)
    ck = save_checkpoint(root / "unet.pt", untrained("unet-xs"), norm=Normalization(low=0.0, high=200.0))
    args = lambda out: ["restore", str(src), "--checkpoint", str(ck), "--output", str(out),  # noqa: E731
                        "--tile", "32", "--overlap", "8", "--chunks", "16"]  # fmt: skip
    reference = root / "reference.zarr"
    r = run("none", 0, root / "reference.log", *args(reference))
    assert r.returncode == 0, r.stderr[-3000:]
    return {"src": src, "ck": ck, "args": args, "reference": file_digest(reference), "input": file_digest(src)}


def _kill_points() -> list[tuple[str, int]]:
    rng = random.Random(20240607)
    modes = ["before-record", "after-record", "mid-write", "progress"]
    return [(mode, rng.randint(1, 22)) for mode in modes]


@pytest.mark.parametrize(("mode", "k"), _kill_points())
def test_killed_restore_resumes_to_the_bytes_of_an_uninterrupted_run(restoration, tmp_path, mode, k):
    out = tmp_path / "out.zarr"
    killed = run(mode, k, tmp_path / "killed.log", *restoration["args"](out))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    record = read_record(out)
    assert record is not None and not record["complete"]
    assert (out / LOCK_NAME).exists()  # the dead writer's lock: taken over by the rerun
    if mode == "mid-write":
        assert list(out.rglob("*.partial"))  # half a chunk in zarr's temporary file

    resumed = run("none", 0, tmp_path / "resumed.log", *restoration["args"](out))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    first = events(tmp_path / "resumed.log")[0]  # the run's first event says how much was already done
    done = first["step"]
    assert first["message"].startswith(f"resuming: {done} of 24 blocks already done")
    # the writer thread runs ahead of progress events by at most the blocks queued for it (2) and the one in hand
    expected = {"before-record": [k - 1], "after-record": [k], "mid-write": [k - 1], "progress": range(k, k + 4)}
    assert done in expected[mode]
    assert [e["step"] for e in events(tmp_path / "resumed.log")][-1] == 24
    assert file_digest(out) == restoration["reference"]  # chunks and record: no stray .partial, no lock
    assert file_digest(restoration["src"]) == restoration["input"]


def test_ctrl_c_stops_restore_after_the_current_block_and_a_rerun_resumes(restoration, tmp_path):
    out = tmp_path / "out.zarr"
    stopped = interrupt(5, tmp_path / "stopped.log", *restoration["args"](out))
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert "interrupted; the work so far is saved" in stopped.stderr and "Traceback" not in stopped.stderr
    record = read_record(out)
    assert not record["complete"] and not (out / LOCK_NAME).exists()  # stopped cleanly: lock released
    resumed = run("none", 0, tmp_path / "resumed.log", *restoration["args"](out))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    first = events(tmp_path / "resumed.log")[0]  # blocks restored before the stop are still written
    assert 5 <= first["step"] < 24 and first["message"].startswith(f"resuming: {first['step']} of 24 blocks")
    assert file_digest(out) == restoration["reference"]


# ---------------------------------------------------------------- distillation


@pytest.fixture(scope="module")
def distillation(tmp_path_factory):
    """A distillation job (10 steps, resumable state every 2) and the losses and weights of an uninterrupted run."""
    root = tmp_path_factory.mktemp("distill")
    rng = np.random.default_rng(5)
    y, x = np.mgrid[:48, :48]
    image = (120 + 80 * np.sin(y / 5) * np.cos(x / 7) + rng.normal(0, 10, (48, 48))).astype(np.float32)
    tifffile.imwrite(root / "data.tif", image)
    torch.manual_seed(0)
    teacher = save_checkpoint(root / "teacher.pt", build_model("student-tiny"), norm=Normalization(low=0, high=250))

    def job(out: Path) -> Path:
        spec = {"data": {"clean": str(root / "data.tif"), "axes": "YX", "patch_size": 16, "batch_size": 2,
                         "val_patches": 1, "degradation": {"kind": "gaussian", "sigma": 0.1}},
                "teacher": str(teacher), "student": "unet-xs", "output": str(out), "loss": {"max_positions": 64},
                "train": {"steps": 10, "lr": 1e-3, "warmup_steps": 2, "val_every": 5, "checkpoint_every": 2,
                          "seed": 7, "device": "cpu"}}  # fmt: skip
        path = out.with_suffix(".yaml")
        path.write_text(yaml.safe_dump(spec))
        return path

    out = root / "reference.pt"
    r = run("none", 0, root / "reference.log", "distill", "--config", job(out))
    assert r.returncode == 0, r.stderr[-3000:]
    losses = {e["step"]: e["losses"] for e in events(root / "reference.log")}
    assert sorted(losses) == list(range(1, 11))
    return {"job": job, "losses": losses, "hash": load_checkpoint(out).hash}


def _kill_steps() -> list[int]:
    rng = random.Random(7)
    return [rng.choice([2, 4, 6, 8]), rng.choice([3, 5, 7, 9])]  # on a saved step, and between two saves


@pytest.mark.parametrize("k", _kill_steps())
def test_killed_distillation_resumes_to_the_losses_and_weights_of_an_uninterrupted_run(distillation, tmp_path, k):
    out = tmp_path / "student.pt"
    job = distillation["job"](out)
    killed = run("progress", k, tmp_path / "killed.log", "distill", "--config", job)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    state = out.with_name("student.pt.state")
    assert state.exists() and not out.exists()
    saved = torch.load(state, weights_only=True)["step"]
    assert saved == k - k % 2  # the last state saved every 2 steps

    resumed = run("none", 0, tmp_path / "resumed.log", "distill", "--config", job)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    before = {e["step"]: e["losses"] for e in events(tmp_path / "killed.log")}
    after = {e["step"]: e["losses"] for e in events(tmp_path / "resumed.log")}
    assert sorted(after) == list(range(saved + 1, 11))  # the resumed run starts after the saved step
    for step in set(before) & set(after):  # steps done twice (after the last save) give the same losses
        assert before[step] == after[step]
    assert {**before, **after} == distillation["losses"]
    ck = load_checkpoint(out)
    assert ck.hash == distillation["hash"] and ck.record["completed"] and ck.record["resumed"]
    assert not state.exists()


def test_ctrl_c_stops_distillation_after_the_current_step_and_a_rerun_resumes(distillation, tmp_path):
    out = tmp_path / "student.pt"
    job = distillation["job"](out)
    stopped = interrupt(3, tmp_path / "stopped.log", "distill", "--config", job)
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert "interrupted; the work so far is saved" in stopped.stderr and "Traceback" not in stopped.stderr
    ck = load_checkpoint(out)  # the current model is saved, marked as not finished
    assert ck.record["steps"] == 3 and not ck.record["completed"]
    assert torch.load(out.with_name("student.pt.state"), weights_only=True)["step"] == 3

    resumed = run("none", 0, tmp_path / "resumed.log", "distill", "--config", job)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    losses = {e["step"]: e["losses"] for e in events(tmp_path / "stopped.log") + events(tmp_path / "resumed.log")}
    assert losses == distillation["losses"]
    assert load_checkpoint(out).hash == distillation["hash"]
