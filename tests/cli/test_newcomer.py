"""A newcomer's path through the command line: the top-level help, ``info``'s training record, ``bench`` on the user's
own image, the documented restore job, and progress lines a person can read."""

import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml

from napari_skd.checkpoint import load_checkpoint
from napari_skd.cli import build_parser, main
from napari_skd.cli.commands import bench_image
from napari_skd.cli.report import progress_printer, setup_logging
from napari_skd.io import open_image
from napari_skd.models import count_flops
from napari_skd.progress import ProgressEvent
from napari_skd.restoration.infer import BlockRestorer
from napari_skd.restoration.options import Options
from napari_skd.samples import load_sample

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "restore.yaml"


def cli(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "napari_skd.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)  # fmt: skip


def field(out: str, name: str) -> str:
    return next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith(name + ": "))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A teacher trained 3 steps on a crop of the nuclei sample and a student distilled from it for 3 steps."""
    root = tmp_path_factory.mktemp("trained")
    image, _ = load_sample("nuclei2d")
    tifffile.imwrite(root / "crop.tif", image[:160, :160])
    common = ["--data.clean", str(root / "crop.tif"), "--data.axes", "YX", "--data.degradation.kind", "gaussian",
              "--data.patch-size", "32", "--data.batch-size", "2", "--data.val-patches", "2", "--steps", "3",
              "--device", "cpu"]  # fmt: skip
    assert main(["--quiet", "train-teacher", *common, "--model", "student-tiny", "--output", str(root / "t.pt")]) == 0
    assert main(["--quiet", "distill", *common, "--teacher", str(root / "t.pt"), "--student", "unet-xs",
                 "--output", str(root / "s.pt")]) == 0  # fmt: skip
    return root


# ------------------------------------------------------------------------------------------------- help and docs


def test_top_level_help_is_for_users():
    result = cli("--help")
    assert result.returncode == 0
    out = result.stdout
    assert "thin adapter" not in out  # the developers' docstring stays in the module
    assert "Restore (denoise) microscopy and medical images" in out and "typical order:" in out
    assert "docs/cli.md" in out and "make demo" in out
    commands = build_parser()._subparsers._group_actions[0].choices
    order = [out.index(f"napari-skd {c} ") for c in ("train-teacher", "distill", "info", "restore")]
    assert order == sorted(order)
    assert all(c in out.split("typical order:")[1] for c in commands)  # every command is placed


def test_cli_md_shows_every_command_with_an_example():
    from test_docs import documented_commands

    commands = set(build_parser()._subparsers._group_actions[0].choices)
    shown = {args[0] for where, args in documented_commands() if where == "cli.md"}
    assert commands <= shown, f"docs/cli.md has no example of: {sorted(commands - shown)}"


# ------------------------------------------------------------------------------------------------------------ info


def test_info_prints_the_training_record_and_readable_flops(trained, capsys):
    path = trained / "s.pt"
    assert main(["info", str(path), "--size", "64"]) == 0
    out = capsys.readouterr().out
    ck = load_checkpoint(path)
    flops = count_flops(ck.model, 64)
    assert int(field(out, "flops")) == flops  # the machine line, unchanged
    value, unit = re.match(r"([\d.]+) (\w+) per 64x64 input", field(out, "compute")).groups()
    assert float(value) == pytest.approx(flops / {"MFLOP": 1e6, "GFLOP": 1e9, "TFLOP": 1e12}[unit], rel=5e-3)
    record = out.split("training record:\n", 1)[1]
    lines = dict(line.strip().split(": ", 1) for line in record.splitlines() if line.startswith("  "))
    rec = ck.record
    assert lines["method"].startswith("skd (soft knowledge distillation")
    assert lines["teacher"].startswith(str(trained / "t.pt")) and ck.teacher_hash[:12] in lines["teacher"]
    assert lines["steps"].startswith(f"{rec['steps']} (completed)") and "on cpu" in lines["steps"]
    assert str(trained / "crop.tif") in lines["data"] and "axes YX" in lines["data"]
    assert "degraded with gaussian" in lines["data"]
    assert f"PSNR {rec['metrics']['psnr']:.2f} dB" in lines["validation"]
    assert f"PSNR {rec['metrics']['psnr_teacher']:.2f} dB" in lines["validation"]
    assert f"at step {rec['validations'][-1]['step']}" in lines["validation"]
    assert lines["created"].startswith(rec["created"][:10]) and "torch " + torch.__version__ in lines["software"]
    assert lines["seed"] == str(rec["seed"])


def test_info_of_a_teacher_says_how_it_was_trained(trained, capsys):
    assert main(["info", str(trained / "t.pt")]) == 0
    out = capsys.readouterr().out
    assert "  method: teacher, supervised" in out and "  teacher: " not in out
    assert "GFLOP per 256x256 input" in field(out, "compute")


# ----------------------------------------------------------------------------------------------------------- bench


@pytest.fixture
def stack(tmp_path):
    """A 5-slice ZYX float32 TIFF whose slices differ (each slice holds its own index)."""
    data = np.stack([np.random.default_rng(i).random((80, 96)) + i for i in range(5)]).astype(np.float32)
    tifffile.imwrite(tmp_path / "stack.tif", data)
    return tmp_path / "stack.tif", data


def test_bench_measures_the_middle_slice_of_a_users_stack(stack, capsys):
    path, data = stack
    plane, what = bench_image(str(path), "ZYX")
    np.testing.assert_array_equal(plane, data[2])
    assert what == f"{path}, 80x96 (YX): Z 2 (middle of 5), from ZYX 5x80x96"
    args = ["bench", "--image", str(path), "--axes", "ZYX", "--size", "64", "--teacher", "student-tiny",
            "--students", "unet-xs", "--repeats", "1", "--degradation", "gaussian", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert field(out, "image") == what
    assert np.isfinite(float(field(out, "psnr input"))) and "latency ratio unet-xs/student-tiny: " in out


def test_bench_takes_the_first_channel_and_a_plain_2d_image(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (64, 72, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    plane, what = bench_image(str(tmp_path / "rgb.tif"))
    np.testing.assert_array_equal(plane, rgb[..., 0])
    assert "C 0 (first of 3)" in what
    tifffile.imwrite(tmp_path / "flat.tif", rgb[..., 1])
    plane, what = bench_image(str(tmp_path / "flat.tif"))
    np.testing.assert_array_equal(plane, rgb[..., 1])
    assert what.endswith("64x72 (YX)")


@pytest.mark.parametrize(
    ("image", "axes", "message"),
    [
        ("missing.tif", None, "--image 'missing.tif' is neither a sample name (nuclei2d"),
        ("stack.tif", None, "is ambiguous: pass axes"),
        ("broken.tif", None, "cannot read the TIFF file"),
    ],
)
def test_bench_refuses_a_bad_image_with_a_message(stack, image, axes, message):
    folder = stack[0].parent
    (folder / "broken.tif").write_bytes(b"not a tiff")
    result = cli("bench", "--image", image, "--size", "32", cwd=folder)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr + result.stdout


# --------------------------------------------------------------------------------------------------------- restore


def test_the_documented_restore_job_loads_runs_and_reports_readable_blocks(trained, tmp_path):
    documented = re.search(r"### A restore job.*?```yaml\n(.*?)```", (ROOT / "docs" / "cli.md").read_text(), re.S)
    assert yaml.safe_load(documented.group(1)) == yaml.safe_load(EXAMPLE.read_text())  # docs and file agree
    job = yaml.safe_load(EXAMPLE.read_text())
    out = tmp_path / "restored.ome.zarr"
    result = cli("restore", "--config", EXAMPLE, "--checkpoint", trained / "s.pt", "--output", out, "--device", "cpu")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"restored: {job['input'][0]} -> {out}" in result.stdout
    restored = open_image(out)
    assert restored.shape == open_image(ROOT / job["input"][0]).shape
    side, (height, width) = job["chunks"], restored.shape
    expected = {f"y {y}:{y + side}, x {x}:{x + side}" for y in range(0, height, side) for x in range(0, width, side)}
    n = len(expected)
    blocks = re.findall(rf"\[restore\] (\d+)/{n} .*block (\d+) of {n} \((.*?)\)", result.stdout)
    assert {where for _, _, where in blocks} == expected
    assert all(step == k for step, k, _ in blocks)
    assert "0/0" not in result.stdout + result.stderr


def test_one_input_path_in_yaml_or_flag_is_enough(trained, tmp_path):
    image, _ = load_sample("nuclei2d")
    tifffile.imwrite(tmp_path / "a.tif", image[:64, :64])
    job = {"input": str(tmp_path / "a.tif"), "checkpoint": str(trained / "s.pt"), "output": str(tmp_path / "y.tif")}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    assert main(["--quiet", "restore", "--config", str(tmp_path / "job.yaml"), "--device", "cpu"]) == 0
    assert main(["--quiet", "restore", "--input", job["input"], "--checkpoint", job["checkpoint"],
                 "--output", str(tmp_path / "f.tif"), "--device", "cpu"]) == 0  # fmt: skip
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "y.tif"), tifffile.imread(tmp_path / "f.tif"))


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_an_out_of_memory_notice_has_no_0_of_0_and_no_bar(trained, monkeypatch, capsys):
    """The restorer's own notice (total 0) in the middle of a bar: its own line, no ``0/0``, no bar drawn for it."""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    setup_logging(quiet=False, verbose=False, log_file=None)
    show = progress_printer()
    notices = []
    options = Options(tile=(64, 64), overlap=8, chunks=(128, 128), window="cosine", dtype="float32", batch_size=1)
    restorer = BlockRestorer(load_checkpoint(trained / "s.pt").model, None, torch.device("cpu"), options,
                             progress=notices.append)  # fmt: skip
    show(ProgressEvent("restore", 0, 4, message="restoring 4 blocks"))
    show(ProgressEvent("restore", 1, 4, eta_s=3.0, message="block 1 of 4 (y 0:128, x 0:128)"))
    restorer._shrink()  # what an out-of-memory error on a GPU triggers
    assert len(notices) == 1 and notices[0].total == 0
    show(notices[0])
    show(ProgressEvent("restore", 2, 4, eta_s=2.0, message="block 2 of 4 (y 0:128, x 128:256)"))
    out, bars = capsys.readouterr().out, terminal.getvalue()
    assert out.splitlines() == [
        "[restore] restoring 4 blocks",
        "[restore] out of memory on cpu: retrying the block with smaller tiles (64x64 -> 32x32 voxels)",
    ]
    assert re.findall(r"\[restore\] \[[#.]+\] (\d+/\d+)", bars) == ["0/4", "1/4", "2/4"]  # none for the notice
    assert bars.split("1/4")[1].split("\n")[0].strip() == "eta 3s"  # the notice ended the bar line first


def test_a_stack_restored_plane_by_plane_names_the_plane_of_each_block(trained, tmp_path):
    image, _ = load_sample("nuclei2d")
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([image[:48, :40], image[48:96, :40]]))
    result = cli("restore", tmp_path / "stack.tif", "--axes", "ZYX", "--checkpoint", trained / "s.pt",
                 "--output", tmp_path / "r.ome.zarr", "--device", "cpu")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    blocks = re.findall(r"block (\d+) of 2 \((.*?)\)", result.stdout)
    assert blocks == [("1", "plane 0: y 0:48, x 0:40"), ("2", "plane 1: y 0:48, x 0:40")]


def test_export_takes_a_users_test_image(trained, tmp_path, capsys):
    import zipfile

    image = np.random.default_rng(2).uniform(0, 200, (3, 100, 90)).astype(np.float32)
    tifffile.imwrite(tmp_path / "mine.tif", image, photometric="minisblack")
    out = tmp_path / "s.zip"
    assert main(["--quiet", "export", str(trained / "s.pt"), "--output", str(out), "--no-onnx",
                 "--test-image", str(tmp_path / "mine.tif"), "--test-axes", "ZYX"]) == 0  # fmt: skip
    with zipfile.ZipFile(out) as z:
        test_input = np.load(io.BytesIO(z.read("test_input.npy")))
    np.testing.assert_array_equal(test_input, image[None, None, 1, 18:82, 13:77])  # middle slice, centre 64 x 64
    assert main(["export", str(trained / "s.pt"), "--output", str(tmp_path / "t.zip"),
                 "--test-image", str(tmp_path / "missing.tif")]) == 2  # fmt: skip
    assert "missing.tif" in capsys.readouterr().err
