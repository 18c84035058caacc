"""The command line: info lines, bench, exit codes and messages without tracebacks."""

import subprocess
import sys

import pytest

from conftest import DATA
from napari_skd.cli import main
from napari_skd.models import build_model, count_flops, count_params


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "napari_skd.cli", *args], capture_output=True, text=True)


def _field(out: str, name: str) -> str:
    return next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith(name + ": "))


def test_info_preset_prints_params_and_flops(capsys):
    assert main(["info", "--preset", "student-xs", "--size", "64"]) == 0
    out = capsys.readouterr().out
    model = build_model("student-xs")
    assert int(_field(out, "params")) == count_params(model)
    assert int(_field(out, "flops")) == count_flops(model, 64)


def test_info_of_the_published_teacher(capsys):
    assert main(["info", "--preset", "teacher", "--in-channels", "3"]) == 0
    out = capsys.readouterr().out
    assert int(_field(out, "params")) > 26_000_000


def test_info_checkpoint(capsys):
    assert main(["info", str(DATA / "checkpoint_v1_student_tiny.pt"), "--size", "32"]) == 0
    out = capsys.readouterr().out
    assert _field(out, "role") == "student"
    assert int(_field(out, "params")) == count_params(build_model("student-tiny"))
    assert "'low': 12.0" in _field(out, "normalisation")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["info", "missing.pt"], "checkpoint file not found: missing.pt"),
        (["info", "--preset", "student-xs", "--size", "0"], "--size must be a positive integer"),
        (["info", "--preset", "huge"], "invalid choice: 'huge'"),
        (["bench", "--image", "nothing"], "--image 'nothing' is neither a sample name"),
        (["bench", "--size", "5000"], "larger than the image"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_input_exits_2_with_a_message_and_no_traceback(args, message):
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_bench_reports_ratios_on_a_real_image():
    result = run_cli("bench", "--size", "64", "--teacher", "student-xs", "--students", "student-tiny", "--repeats", "1")
    assert result.returncode == 0, result.stderr
    assert "device: using" in result.stdout
    ratio = float(_field(result.stdout, "latency ratio student-tiny/student-xs"))
    assert ratio > 0


def test_help_lists_every_option():
    result = run_cli("bench", "--help")
    for option in ("--image", "--size", "--teacher", "--students", "--repeats", "--device"):
        assert option in result.stdout


@pytest.mark.parametrize(("flags", "tile"), [(["--tile", "32"], 32), (["--tile", "16", "32", "48"], (16, 32, 48))])
def test_restore_flags_take_one_side_or_one_per_axis(flags, tile):
    """``--tile`` and ``--chunks`` come from RestoreOptions' ``int | tuple`` fields: one value, or one per axis."""
    from napari_skd.cli import build_parser
    from napari_skd.cli.jobs import load_job
    from napari_skd.restoration.job import RestoreJob

    args = build_parser().parse_args(["restore", "a.tif", "--checkpoint", "s.pt", "--output", "o.zarr", *flags])
    job = RestoreJob.of(**load_job(args) | {"input": list(args.inputs)})
    assert job.tile == tile and job.chunks is None and job.overwrite is False
