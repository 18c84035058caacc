"""The Makefile's set-up picks torch's build from the machine: the CUDA wheel from the default index where
`nvidia-smi` lists a GPU, the CPU wheel from PyTorch's CPU index elsewhere, and TORCH_VARIANT overrides the choice.

Checked with `make -n` (nothing runs) on a fresh VENV in a temporary folder, with a fake `nvidia-smi` on PATH or
none at all."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAKE = shutil.which("make")
CPU_INDEX = "--index-url https://download.pytorch.org/whl/cpu"
NVIDIA_CHECK = "grep -qi nvidia"

pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def path_without_nvidia_smi() -> list[str]:
    """This PATH's folders less any that holds an `nvidia-smi`: make, bash and the rest are still found."""
    return [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "nvidia-smi").exists()]


def fake_nvidia_smi(folder: Path, *, works: bool) -> Path:
    """An `nvidia-smi` that lists one GPU (``works``) or fails as it does when the driver is not loaded."""
    folder.mkdir()
    script = folder / "nvidia-smi"
    if works:
        script.write_text('#!/bin/sh\necho "GPU 0: NVIDIA H200 (UUID: GPU-00000000-fake)"\n')
    else:
        script.write_text(
            '#!/bin/sh\necho "NVIDIA-SMI has failed because it could not communicate with the driver"\nexit 9\n'
        )
    script.chmod(0o755)
    return folder


def dry_run(tmp_path: Path, target: str = "demo", *, gpu: str = "none", variables: tuple[str, ...] = ()):
    """`make -n TARGET` for a VENV that does not exist yet; ``gpu`` is "none", "working" or "broken"."""
    real = path_without_nvidia_smi()
    if gpu != "none":
        real.insert(0, str(fake_nvidia_smi(tmp_path / "bin", works=gpu == "working")))
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "TORCH_VARIANT")}
    env["PATH"] = os.pathsep.join(real)
    return subprocess.run(
        [MAKE, "-n", f"VENV={tmp_path / 'venv'}", *variables, target],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def torch_installs(output: str) -> list[str]:
    return [line.split("-m pip install", 1)[1].strip() for line in output.splitlines() if "torch==" in line]


def assert_cuda(output: str):
    """torch from the default index only, and no refusal of the nvidia-* packages that come with it."""
    assert torch_installs(output) == ["-q torch==2.13.0"], output
    assert "download.pytorch.org" not in output
    assert NVIDIA_CHECK not in output


def assert_cpu(output: str):
    """torch alone from the CPU index, then its dependencies; nvidia-* packages are refused afterwards."""
    assert torch_installs(output) == [f"-q --no-deps torch==2.13.0 {CPU_INDEX}", "-q torch==2.13.0"], output
    assert NVIDIA_CHECK in output


def test_a_fake_gpu_is_found_on_path_and_none_is_left_from_the_real_path(tmp_path):
    """The test's own premise: a machine with or without nvidia-smi as the Makefile's shell sees it."""
    fake_nvidia_smi(tmp_path / "bin", works=True)
    real = path_without_nvidia_smi()
    found = shutil.which("nvidia-smi", path=os.pathsep.join([str(tmp_path / "bin"), *real]))
    assert found == str(tmp_path / "bin" / "nvidia-smi")
    assert shutil.which("nvidia-smi", path=os.pathsep.join(real)) is None


@pytest.mark.parametrize("target", ["demo", "test"])
def test_a_gpu_machine_installs_the_cuda_wheel_from_the_default_index(tmp_path, target):
    run = dry_run(tmp_path, target, gpu="working")
    assert run.returncode == 0, run.stderr
    assert_cuda(run.stdout)


@pytest.mark.parametrize("target", ["demo", "test"])
def test_a_machine_without_nvidia_smi_installs_the_cpu_wheel(tmp_path, target):
    run = dry_run(tmp_path, target, gpu="none")
    assert run.returncode == 0, run.stderr
    assert_cpu(run.stdout)


def test_an_nvidia_smi_that_fails_counts_as_no_gpu(tmp_path):
    """nvidia-smi without a loaded driver (a container, a broken install): CUDA torch would not run there."""
    run = dry_run(tmp_path, gpu="broken")
    assert run.returncode == 0, run.stderr
    assert_cpu(run.stdout)


def test_torch_comes_before_the_package(tmp_path):
    """The package's `torch>=2.4` must find the chosen torch already there, or pip would pick a build itself."""
    lines = dry_run(tmp_path).stdout.splitlines()
    torch_lines = [i for i, line in enumerate(lines) if "pip install" in line and "torch==" in line]
    package = next(i for i, line in enumerate(lines) if "pip install -q -e" in line)
    assert torch_lines and max(torch_lines) < package


@pytest.mark.parametrize(("gpu", "variant"), [("working", "cpu"), ("none", "cuda")])
def test_torch_variant_overrides_what_the_machine_has(tmp_path, gpu, variant):
    run = dry_run(tmp_path, gpu=gpu, variables=(f"TORCH_VARIANT={variant}",))
    assert run.returncode == 0, run.stderr
    (assert_cpu if variant == "cpu" else assert_cuda)(run.stdout)


def test_an_unknown_torch_variant_is_refused_with_the_choices(tmp_path):
    run = dry_run(tmp_path, variables=("TORCH_VARIANT=gpu",))
    assert run.returncode != 0
    assert "TORCH_VARIANT must be cpu or cuda" in run.stderr
    assert "pip install" not in run.stdout
