"""A catalogue of bad inputs: every one is refused with a message for the user, never a traceback, and leaves the
inputs untouched and any output in a state a rerun can handle.

Each :class:`Row` names the surface it goes through (the command line as a subprocess, the Python API, or the
napari widgets' core functions), describes the bad input for a person, creates it in ``tmp_path`` and says which
part of the message the user must see. ``docs/make_reliability.py`` writes ``docs/reliability.md`` from ``ROWS`` and
``HANDLED``; a test below checks that the committed page is what the table gives.

After every row: the bytes of its inputs (images, checkpoints, job files, earlier outputs) are unchanged; outputs
it lists do not exist; and where the failure happens after an output was started, ``rerun`` fixes the cause and
reruns the same job, which must resume or (for a changed input) be refused until ``--overwrite`` is given.

Read-only outputs: the tests run as root, where ``chmod`` does not stop writes. A read-only place is simulated by
an output whose parent is a regular file, which nobody can create a folder under (no mount or chattr needed). A full
disk is simulated by making zarr's local store raise ``OSError(ENOSPC)`` once a few chunks are written.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import torch
import yaml
import zarr

from conftest import file_digest, untrained
from napari_skd import distill, restore, train_teacher
from napari_skd.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from napari_skd.errors import InputError, SkdError
from napari_skd.io.writers import create_ome_zarr
from napari_skd.models import build_model
from napari_skd.normalize import Normalization

ROOT = Path(__file__).resolve().parents[1]
SURFACES = {
    "cli": "command line (`napari-skd ...`, exit code 2, no traceback)",
    "api": "Python API (`restore`, `train_teacher`, `distill`, `load_checkpoint`): raises `InputError`",
    "widget": "napari widgets' core (`build_jobs` and the worker body `_run`): the message becomes a notification",
}
GRID = ["--tile", "16", "--overlap", "4", "--chunks", "16"]  # 48 x 48 images: 3 x 3 blocks
API_GRID = dict(tile=16, overlap=4, chunks=16)


# ---------------------------------------------------------------- the table


@dataclass
class Case:
    """What a row's setup made: the call, and what to check afterwards."""

    call: list[str] | Callable[[], Any]  # CLI arguments after ``napari-skd``, or a function (api, widget)
    inputs: list[Path] = field(default_factory=list)  # must keep their bytes
    outputs: list[Path] = field(default_factory=list)  # must not exist after the failure
    rerun: Callable[[], None] | None = None  # fix the cause and rerun; asserts by itself
    check: Callable[[], None] | None = None  # further assertions after the failure


@dataclass(frozen=True)
class Row:
    id: str
    surface: str  # "cli", "api" or "widget"
    what: str  # the bad input, for a person
    expect: str  # parts of the message the user sees, in order, separated by " ... " (paths vary)
    setup: Callable[[Path, Any], Case]


ROWS: list[Row] = []


def row(id: str, surface: str, what: str, expect: str):
    def register(setup: Callable[[Path, Any], Case]) -> Callable[[Path, Any], Case]:
        ROWS.append(Row(id, surface, what, expect, setup))
        return setup

    return register


#: Odd inputs that are not errors: what napari-skd does with them, and the test that shows it.
HANDLED: list[tuple[str, str, str]] = [
    ("Distil pressed with no teacher loaded", "the shipped teacher is fine-tuned on the data first, then distilled "
     "(the measured default without clean data, docs/pretrained.md)",
     "test_distill_widget_reports_bad_input_as_notifications"),
    ("a 1-pixel image (restore)", "restored: reflect padding keeps mirroring, the output has the input's shape",
     "test_tiny_and_thin_images_are_restored"),
    ("an image smaller than the tile", "restored: tiles shrink to the image (snapped to the model's multiple of 8)",
     "test_tiny_and_thin_images_are_restored"),
    ("uint16 full range, int32/uint32/int64/uint64 near their limits, int8, with `dtype=\"input\"`",
     "rounded and clipped to the dtype's range, never wrapped round", "test_integer_extremes_are_clipped_not_wrapped"),
    ("a zarr store with a missing chunk", "read as the array's fill value, as zarr defines (a sparse array is valid)",
     "test_missing_zarr_chunk_reads_as_the_fill_value"),
    ("`napari-skd restore` on an output already complete for the same job (same fingerprint)",
     "skipped (`skipped (already complete)`, exit 0), so a many-file job can be rerun; `--overwrite` redoes it",
     "test_cli_skips_a_complete_output"),
    ("`--output out.tif` or `out.nii.gz` (a result that fits in memory)",
     "written in that format, atomically, carrying napari-skd's record; a larger result is refused with a pointer to "
     "OME-Zarr", "test_a_tif_name_writes_an_ome_tiff_with_the_voxel_size"),
    ("a folder of mixed images (TIFF, NIfTI, DICOM) and other files",
     "expanded to its images, each its own input; the warning names what was skipped and why; only a folder whose "
     "images are all DICOM is read as one series", "test_a_mixed_folder_is_its_images_not_a_dicom_series"),
    ("a 3-D model on a stack thinner than its patch (8 slices, default patch 64)",
     "trained with patches shrunk along Z to fit the stack (and, the size left at its default, in Y and X to leave "
     "room for validation: 8 x 32 x 32 here); a progress message says so",
     "test_an_8_slice_stack_trains_a_3d_teacher_and_student"),
    ("a small volume (24 x 58 x 58) with the default patch settings",
     "the patch shrinks to fit and validation holds out the last Z slices (or samples; or the patch shrinks further "
     "to leave validation rows); progress messages say what was chosen",
     "test_a_small_volume_trains_with_the_default_patch_settings"),
    ("CAREamics' axes `SYX` (a stack of independent samples), given or in TIFF metadata",
     "read as `TYX`: each sample trained on and restored on its own; an OME-Zarr output names the axis `t`",
     "test_syx_arrays_and_tiffs_restore_like_a_time_series"),
    ("a bioformats2raw OME-Zarr container holding one image", "that image is opened",
     "test_a_container_of_one_image_opens_that_image"),
    ("a bioimage.io export of a model trained on files whose names are personal data",
     "the names are withheld from the package (README, record) unless `--include-paths`",
     "test_paths_are_withheld_wherever_the_record_names_files"),
]  # fmt: skip


# ---------------------------------------------------------------- shared fixtures and helpers


class _Payload:
    """Unpickling this object would create a file: the attack a model file can carry."""

    def __init__(self, target: Path):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


@dataclass
class Env:
    root: Path
    ck2d: Path  # unet-xs, 1 channel, normalisation 0..255
    ck2ch: Path  # unet-xs, 2 channels in and out
    teacher: Path  # student-tiny teacher with normalisation
    data: Path  # 48 x 48 float32 TIFF for training jobs


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    root = tmp_path_factory.mktemp("shared")
    torch.manual_seed(0)
    norm = Normalization(low=0.0, high=255.0)
    ck2d = save_checkpoint(root / "unet2d.pt", untrained("unet-xs"), norm=norm)
    ck2ch = save_checkpoint(root / "unet2ch.pt", untrained("unet-xs", in_channels=2, out_channels=2))
    teacher = save_checkpoint(root / "teacher.pt", build_model("student-tiny"), norm=norm)
    data = root / "data.tif"
    tifffile.imwrite(data, picture())
    return Env(root, ck2d, ck2ch, teacher, data)


def picture(shape=(48, 48), seed=0) -> np.ndarray:
    """A smooth image with noise, 0..255, float32."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: shape[-2], : shape[-1]]
    clean = 120 + 80 * np.sin(y / 5) * np.cos(x / 7)
    return np.broadcast_to(clean + rng.normal(0, 10, clean.shape), shape).astype(np.float32)


#: One torch thread per CLI process: OpenMP threads spin against each other on a busy 2-core machine.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "napari_skd.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=600, env=ENV)


def cli_ok(*args: str) -> subprocess.CompletedProcess:
    r = cli(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def restore_args(src: Path, ck: Path, out: Path, *extra: str) -> list[str]:
    return ["restore", str(src), "--checkpoint", str(ck), "--output", str(out), *GRID, *extra]


def tiff(path: Path, data: np.ndarray) -> Path:
    tifffile.imwrite(path, data, photometric="minisblack")  # a 3 x Y x X stack is not RGB
    return path


def job_file(path: Path, job: dict) -> Path:
    path.write_text(yaml.safe_dump(job))
    return path


def data_section(source: Any, **changes: Any) -> dict:
    return {"clean": source, "axes": "YX", "degradation": {"kind": "gaussian", "sigma": 0.1}, "patch_size": 16,
            "batch_size": 2, "val_patches": 1, **changes}  # fmt: skip


def distill_job(env: Env, out: Path, **changes: Any) -> dict:
    job = {
        "data": data_section(str(env.data)),
        "teacher": str(env.teacher),
        "student": "unet-xs",
        "output": str(out),
        "loss": {"max_positions": 64},
        "train": {"steps": 2, "val_every": 2, "device": "cpu"},
    }
    return {**job, **changes}  # fmt: skip


def teacher_job(data: Any, out: Path, **data_changes: Any) -> dict:
    return {"data": data_section(data, **data_changes), "model": "student-tiny", "output": str(out),
            "train": {"steps": 2, "val_every": 2, "device": "cpu"}}  # fmt: skip


def trained(out: Path) -> list[Path]:
    """A training job's outputs: the checkpoint and its resumable state."""
    return [out, out.with_name(out.name + ".state")]


def rewrite_checkpoint(path: Path, **changes: Any) -> Path:
    obj = torch.load(path, weights_only=True)
    obj.update(changes)
    torch.save(obj, path)
    return path


# ---------------------------------------------------------------- command line: images


@row("cli-nan-pixels", "cli", "a float32 TIFF with a NaN pixel (in the last block)",
     "NaN or Inf pixels (or values too large for float32) in the region Y 28:48, X 28:48: "
     "expected finite values")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    image = picture()
    image[40, 40] = np.nan
    src, out = tiff(tmp / "nan.tif", image), tmp / "out.zarr"

    def rerun() -> None:  # blocks before the NaN were written; the fixed file is a new input: --overwrite needed
        assert json.loads((out / "zarr.json").read_text())["attributes"]["napari_skd"]["done"]
        tiff(src, np.nan_to_num(image))
        r = cli(*restore_args(src, env.ck2d, out))
        assert r.returncode == 2 and "partial result of a different job" in r.stderr and "--overwrite" in r.stderr
        cli_ok(*restore_args(src, env.ck2d, out, "--overwrite"))

    return Case(restore_args(src, env.ck2d, out), [env.ck2d], rerun=rerun)


@row("cli-empty-array", "cli", "a zarr array of shape (0, 32)",
     "of shape (0, 32) is empty (a zero-size axis): expected at least one pixel along every axis")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    src, out = tmp / "empty.zarr", tmp / "out.zarr"
    zarr.create_array(str(src), shape=(0, 32), dtype="float32")
    return Case(restore_args(src, env.ck2d, out), [src, env.ck2d], [out])


@row("cli-bool-dtype", "cli", "a boolean zarr array (a mask, not an image)", "has dtype bool, which cannot be restored")
def _(tmp: Path, env: Env) -> Case:
    src, out = tmp / "mask.zarr", tmp / "out.zarr"
    zarr.create_array(str(src), data=picture() > 120)
    return Case(restore_args(src, env.ck2d, out), [src, env.ck2d], [out])


@row("cli-complex-dtype", "cli", "a complex64 TIFF (e.g. a Fourier transform)", "has dtype complex64")
def _(tmp: Path, env: Env) -> Case:
    src, out = tiff(tmp / "fft.tif", np.fft.fft2(picture()).astype(np.complex64)), tmp / "out.zarr"
    return Case(restore_args(src, env.ck2d, out), [src, env.ck2d], [out])


@row("cli-axes-unknown-letter", "cli", "`--axes QX`: a letter that is not an OME axis", "contains unknown letter(s) Q")
def _(tmp: Path, env: Env) -> Case:
    src, out = tiff(tmp / "in.tif", picture()), tmp / "out.zarr"
    return Case([*restore_args(src, env.ck2d, out), "--axes", "QX"], [src, env.ck2d], [out])


@row("cli-axes-duplicate", "cli", "`--axes YY`: the same axis twice", "repeats Y; each letter may appear only once")
def _(tmp: Path, env: Env) -> Case:
    src, out = tiff(tmp / "in.tif", picture()), tmp / "out.zarr"
    return Case([*restore_args(src, env.ck2d, out), "--axes", "YY"], [src, env.ck2d], [out])


@row("cli-axes-count", "cli", "`--axes YX` for a 3-D stack", "has 2 letter(s) but the image has 3 dimension(s)")
def _(tmp: Path, env: Env) -> Case:
    src, out = tiff(tmp / "stack.tif", picture((3, 48, 48))), tmp / "out.zarr"
    return Case([*restore_args(src, env.ck2d, out), "--axes", "YX"], [src, env.ck2d], [out])


@row("cli-axes-ambiguous", "cli", "a 3-D TIFF stack without axes metadata and no `--axes`",
     "is ambiguous: pass axes, e.g. 'ZYX' (a volume)")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    src, out = tiff(tmp / "stack.tif", picture((3, 48, 48))), tmp / "out.zarr"
    return Case(restore_args(src, env.ck2d, out), [src, env.ck2d], [out])


@row("cli-more-channels-than-model", "cli", "3 channels (`--axes CYX`) for a 2-channel model",
     "the image has 3 channels (axis C) but the model expects 2 input channels")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    src, out = tiff(tmp / "rgb.tif", picture((3, 48, 48))), tmp / "out.zarr"
    return Case([*restore_args(src, env.ck2ch, out), "--axes", "CYX"], [src, env.ck2ch], [out])


@row("cli-bioformats2raw-several-images", "cli", "a bioformats2raw OME-Zarr container holding two images (0/, 1/)",
     "is a bioformats2raw container holding 2 images (0, 1) ... open one of them, e.g. ... two.zarr/0")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    src, out = tmp / "two.zarr", tmp / "out.zarr"
    root = zarr.open_group(str(src), mode="w", zarr_format=2)
    root.attrs["bioformats2raw.layout"] = 3
    for name in "01":
        image = root.create_group(name)
        image.create_array("0", data=picture())
        image.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": "y"}, {"name": "x"}],
                                       "datasets": [{"path": "0"}]}]  # fmt: skip
    return Case(restore_args(src, env.ck2d, out), [src, env.ck2d], [out])


@row("cli-missing-file", "cli", "an input path that does not exist", "file not found: ... check the path")
def _(tmp: Path, env: Env) -> Case:
    out = tmp / "out.zarr"
    return Case(restore_args(tmp / "nope.tif", env.ck2d, out), [env.ck2d], [out])


@row("cli-folder-not-image", "cli", "a folder (holding only a text file) where an image was expected",
     "holds no supported images: expected .tif/.tiff")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    folder, out = tmp / "notes", tmp / "out.zarr"
    folder.mkdir()
    (folder / "readme.txt").write_text("not an image")
    return Case(restore_args(folder, env.ck2d, out), [folder, env.ck2d], [out])


@row("cli-truncated-tiff", "cli", "a TIFF cut in half (an interrupted copy)",
     "is truncated: its pixel data ends at byte ... re-copy or re-export it")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    src, out = tiff(tmp / "in.tif", picture()), tmp / "out.zarr"
    src.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    return Case(restore_args(src, env.ck2d, out), [src, env.ck2d], [out])


@row("cli-corrupt-zarr-chunk", "cli", "a zarr input with one corrupt chunk (read by the last blocks)",
     "cannot read pixels from ... the file may be damaged or truncated; re-copy or re-export it")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    src, out = tmp / "in.zarr", tmp / "out.zarr"
    zarr.create_array(str(src), data=picture(), chunks=(16, 16))
    chunk = src / "c" / "2" / "2"
    good = chunk.read_bytes()
    chunk.write_bytes(b"not a zstd frame" * 4)

    def rerun() -> None:  # repaired in place: the same job resumes after the blocks already recorded
        chunk.write_bytes(good)
        r = cli_ok(*restore_args(src, env.ck2d, out))
        assert "resuming:" in r.stdout and "already done" in r.stdout

    return Case(restore_args(src, env.ck2d, out), [env.ck2d], rerun=rerun)


@row("cli-ome-zarr-broken-metadata", "cli", "an OME-Zarr whose multiscales name a level that does not exist",
     "the OME-Zarr metadata of ... is malformed (KeyError: '7')")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    src, out = tmp / "in.ome.zarr", tmp / "out.zarr"
    create_ome_zarr(src, shape=(48, 48), dtype="float32", chunks=(16, 16), axes="YX")[...] = picture()
    meta = json.loads((src / "zarr.json").read_text())
    meta["attributes"]["ome"]["multiscales"][0]["datasets"][0]["path"] = "7"
    (src / "zarr.json").write_text(json.dumps(meta))
    return Case(restore_args(src, env.ck2d, out), [src, env.ck2d], [out])


# ---------------------------------------------------------------- command line: outputs and options


@row("cli-output-parent-is-a-file", "cli",
     "an output under a regular file (a place nobody can write: stands in for a read-only folder)",
     "cannot write the output ... Not a directory ... choose a folder you can write to")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    src, blocker = tiff(tmp / "in.tif", picture()), tmp / "blocker"
    blocker.write_text("a file, not a folder")
    return Case(restore_args(src, env.ck2d, blocker / "out.zarr"), [src, env.ck2d, blocker])


@row("cli-output-is-input", "cli", "`--output` equal to the input path",
     "is the input ... inputs are never modified; choose an output path outside the input")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    src = tiff(tmp / "in.tif", picture())
    return Case([*restore_args(src, env.ck2d, src), "--overwrite"], [src, env.ck2d])


@row("cli-output-is-checkpoint", "cli", "`--output` equal to the checkpoint, with `--overwrite`",
     "is or holds the checkpoint ... inputs are never modified")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    src, ck = tiff(tmp / "in.tif", picture()), tmp / "model.pt"
    shutil.copy(env.ck2d, ck)
    return Case([*restore_args(src, ck, ck), "--overwrite"], [src, ck])


@row("api-output-complete", "api", "an output already complete for the same job (no `overwrite`)",
     "already complete for this same job; pass overwrite=True (--overwrite)")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    src, out = tiff(tmp / "in.tif", picture()), tmp / "out.zarr"
    restore(src, env.ck2d, out, **API_GRID)
    return Case(lambda: restore(src, env.ck2d, out, **API_GRID), [src, env.ck2d, out])


@row("cli-tile-zero", "cli", "`--tile 0`", "tile 0 is not valid: expected one positive whole number")
def _(tmp: Path, env: Env) -> Case:
    src, out = tiff(tmp / "in.tif", picture()), tmp / "out.zarr"
    return Case([*restore_args(src, env.ck2d, out), "--tile", "0"], [src, env.ck2d], [out])


@row("cli-overlap-negative", "cli", "`--overlap -1`", "overlap must be a whole number of voxels >= 0, got -1")
def _(tmp: Path, env: Env) -> Case:
    src, out = tiff(tmp / "in.tif", picture()), tmp / "out.zarr"
    return Case([*restore_args(src, env.ck2d, out), "--overlap", "-1"], [src, env.ck2d], [out])


@row("cli-tile-not-above-overlap", "cli", "`--tile 16 --overlap 16`: tiles could not advance",
     "must be larger than the overlap 16")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    src, out = tiff(tmp / "in.tif", picture()), tmp / "out.zarr"
    return Case([*restore_args(src, env.ck2d, out), "--overlap", "16"], [src, env.ck2d], [out])


@row("cli-restore-yaml-unknown-key", "cli", "a restore job file with a misspelt key (`tiles:`)",
     "tiles: Extra inputs are not permitted")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    src, out = tiff(tmp / "in.tif", picture()), tmp / "out.zarr"
    job = job_file(tmp / "job.yaml", {"input": [str(src)], "checkpoint": str(env.ck2d), "output": str(out),
                                      "tiles": 16})  # fmt: skip
    return Case(["restore", "--config", str(job)], [src, env.ck2d, job], [out])


# ---------------------------------------------------------------- what napari-skd did not write (issue 13)


def user_folder(path: Path) -> Path:
    """A user's folder with a file of their own in it."""
    path.mkdir()
    (path / "notes.txt").write_text("my notes")
    return path


@row("cli-overwrite-user-folder", "cli", "`--output` a user's folder (with a notes file), with `--overwrite`",
     "was not written by napari-skd ... even with overwrite; choose another output path")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    src, folder = tiff(tmp / "in.tif", picture()), user_folder(tmp / "myfolder")
    return Case([*restore_args(src, env.ck2d, folder), "--overwrite"], [src, env.ck2d, folder])


@row("cli-overwrite-user-tiff", "cli", "`--output` a user's TIFF, with `--overwrite`",
     "not written by napari-skd ... even with overwrite")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    src, victim = tiff(tmp / "in.tif", picture()), tiff(tmp / "victim.tif", picture(seed=3))
    return Case([*restore_args(src, env.ck2d, victim), "--overwrite"], [src, env.ck2d, victim])


@row("cli-convert-overwrite-user-folder", "cli", "`convert` into a user's folder, with `--overwrite`",
     "was not written by napari-skd ... even with overwrite")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    src, folder = tiff(tmp / "in.tif", picture()), user_folder(tmp / "mine.zarr")
    return Case(["convert", str(src), str(folder), "--overwrite"], [src, folder])


@row("cli-convert-output-tif", "cli", "`convert` to a name ending .tif (it writes OME-Zarr)",
     "does not name an OME-Zarr store ... give a name ending .ome.zarr or .zarr")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    src = tiff(tmp / "in.tif", picture())
    return Case(["convert", str(src), str(tmp / "out.tif")], [src], [tmp / "out.tif"])


@row("cli-output-unknown-extension", "cli", "`--output out.png`: a format napari-skd does not write",
     "has an extension napari-skd does not write: expected a name ending .ome.zarr or .zarr")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    src = tiff(tmp / "in.tif", picture())
    return Case(restore_args(src, env.ck2d, tmp / "out.png"), [src, env.ck2d], [tmp / "out.png"])


@row("cli-complete-output-of-another-image", "cli",
     "an output complete for another image: never skipped as done (a stale result), refused as a different job",
     "holds a complete result of a different job (differs in: input)")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    first, second = tiff(tmp / "a.tif", picture()), tiff(tmp / "b.tif", picture(seed=5))
    out = tmp / "out.zarr"
    restore(first, env.ck2d, out, **API_GRID)

    def rerun() -> None:  # the other image replaces it only when asked
        cli_ok(*restore_args(second, env.ck2d, out), "--overwrite")
        assert np.array_equal(restore(second, env.ck2d, None, **API_GRID), np.asarray(zarr.open_array(out / "0")))

    return Case(restore_args(second, env.ck2d, out), [first, second, env.ck2d, out], rerun=rerun)


@row("api-train-output-user-file", "api", "`output` a user's file that is not a checkpoint, with `overwrite`",
     "is not a napari-skd checkpoint: napari-skd never replaces what it did not write")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    out = tmp / "results.pt"
    out.write_text("a user's own file")
    job = teacher_job(str(env.data), out) | {"overwrite": True}
    return Case(lambda: train_teacher(job), [env.data, out])


@row("cli-many-inputs-one-file-name", "cli", "two inputs and `--output out.tif` (one file for several images)",
     "2 inputs need an output folder (one NAME.ome.zarr each), but ... names a single file")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    a, b = tiff(tmp / "a.tif", picture()), tiff(tmp / "b.tif", picture(seed=2))
    out = tmp / "out.tif"
    return Case(["restore", str(a), str(b), "--checkpoint", str(env.ck2d), "--output", str(out), *GRID],
                [a, b, env.ck2d], [out])  # fmt: skip


@row("cli-ct-through-microscopy-model", "cli",
     "a CT slice in Hounsfield units through a microscopy model (trained on 0-255)",
     "the input's intensities ... HU) are far from those the model was trained on (0 to 255) ... --intensities "
     "renormalize")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    ct = Path(shutil.copytree(ROOT / "sample_data" / "ct_dicom", tmp / "ct"))
    return Case(restore_args(ct, env.ck2d, tmp / "out.zarr"), [ct, env.ck2d], [tmp / "out.zarr"])


@row("api-rgb-8bit-through-16bit-model", "api", "an 8-bit RGB image through a 1-channel model of 16-bit data",
     "are far from those the model was trained on (100 to 4000)")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    ck = save_checkpoint(tmp / "m16.pt", untrained("unet-xs"), norm=Normalization(low=100.0, high=4000.0))
    rgb = np.stack([picture(seed=s).astype(np.uint8) for s in range(3)], axis=-1)  # Y, X, C of 0..255
    return Case(lambda: restore(rgb, ck, axes="YXC", **API_GRID), [ck])


# ---------------------------------------------------------------- command line: checkpoints


@row("cli-checkpoint-newer-format", "cli", "a checkpoint written by a newer napari-skd (format version 99)",
     "checkpoint format 99, newer than this napari-skd reads (1); upgrade napari-skd")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    ck = rewrite_checkpoint(Path(shutil.copy(env.ck2d, tmp / "new.pt")), format_version=99)
    src, out = tiff(tmp / "in.tif", picture()), tmp / "out.zarr"
    return Case(restore_args(src, ck, out), [src, ck], [out])


@row("cli-unknown-pretrained-name", "cli", "`--checkpoint pretrained:general-3d` (a shipped model that does not exist)",
     "unknown pretrained model 'pretrained:general-3d'; the shipped models are: pretrained:general-2d")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    src, out = tiff(tmp / "in.tif", picture()), tmp / "out.zarr"
    return Case(restore_args(src, Path("pretrained:general-3d"), out), [src], [out])


@row("api-init-other-kind", "api", "`init: pretrained:general-2d` (2D, 1 channel) on 2-channel images",
     "is a 2D model of 1 channel(s), but the job trains a 2D model of 2 channel(s)")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    out = tmp / "t.pt"
    two = np.stack([picture(), picture(seed=2)]).astype(np.float32)
    job = {"data": {"degraded": [two], "axes": "CYX", "patch_size": 16, "batch_size": 2},
           "init": "pretrained:general-2d", "output": str(out), "train": {"steps": 1, "device": "cpu"}}  # fmt: skip
    return Case(lambda: train_teacher(job), [], trained(out))


@row("cli-checkpoint-truncated", "cli", "a checkpoint cut short (an interrupted download)",
     "the file is damaged, truncated or not a PyTorch checkpoint")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    ck = tmp / "cut.pt"
    ck.write_bytes(env.ck2d.read_bytes()[:50_000])
    return Case(["info", str(ck)], [ck])


@row("cli-checkpoint-code-payload", "cli", "a napari-skd checkpoint carrying a pickled code payload",
     "could run code on this computer")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    target, ck = tmp / "pwned.txt", tmp / "evil.pt"
    torch.save({"format": FORMAT, "format_version": 1, "role": "teacher", "payload": _Payload(target)}, ck)

    def check() -> None:
        assert not target.exists()

    return Case(["info", str(ck)], [ck], [target], check=check)


@row("cli-official-pth-code-payload", "cli", "an official-format Restormer `.pth` whose weights carry code",
     "refused to load ... it contains Python objects other than tensors and plain data, "
     "which could run code")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    target, ck = tmp / "pwned.txt", tmp / "restormer.pth"
    torch.save({"params": {"patch_embed.proj.weight": _Payload(target)}}, ck)
    src, out = tiff(tmp / "in.tif", picture()), tmp / "out.zarr"
    return Case(restore_args(src, ck, out), [src, ck], [out, target])


@row("cli-checkpoint-hostile-shape", "cli",
     "a checkpoint whose weight claims a 2**20 x 2**20 x 3 x 3 shape backed by one stored number",
     "declares shape (1048576, 1048576, 3, 3) but the file stores only 4 bytes for it; "
     "the file is damaged or crafted")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    ck = Path(shutil.copy(env.teacher, tmp / "hostile.pt"))
    obj = torch.load(ck, weights_only=True)
    obj["state_dict"]["patch_embed.proj.weight"] = torch.zeros(1).expand(2**20, 2**20, 3, 3)
    torch.save(obj, ck)
    return Case(["info", str(ck)], [ck])


@row("cli-info-zero-channels", "cli", "`napari-skd info --preset student-tiny --in-channels 0`",
     "--in-channels must be a positive integer, got 0")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    return Case(["info", "--preset", "student-tiny", "--in-channels", "0"])


# ---------------------------------------------------------------- command line: training jobs


@row("cli-job-unknown-key", "cli", "a distillation job file with an unknown key (`bogus: 1`)",
     "bogus: Extra inputs are not permitted")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    out = tmp / "student.pt"
    job = job_file(tmp / "job.yaml", {**distill_job(env, out), "bogus": 1})
    return Case(["distill", "--config", str(job)], [job, env.teacher, env.data], trained(out))


@row("cli-job-wrong-type", "cli", "a job file with `train: {steps: many}`",
     "train.steps: Input should be a valid integer")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    out = tmp / "student.pt"
    job = job_file(tmp / "job.yaml", distill_job(env, out, train={"steps": "many"}))
    return Case(["distill", "--config", str(job)], [job, env.teacher, env.data], trained(out))


@row("cli-steps-negative", "cli", "`napari-skd train-teacher ... --steps -5`",
     "train.steps: Input should be greater than or equal to 1")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    out = tmp / "teacher.pt"
    job = job_file(tmp / "job.yaml", teacher_job(str(env.data), out))
    return Case(["train-teacher", "--config", str(job), "--steps", "-5"], [job, env.data], trained(out))


@row("cli-teacher-data-channels", "cli", "a 2-channel teacher with 1-channel training images",
     "the teacher takes 2 channel(s) but the data has 1")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    out = tmp / "student.pt"
    job = job_file(tmp / "job.yaml", distill_job(env, out, teacher=str(env.ck2ch)))
    return Case(["distill", "--config", str(job)], [job, env.ck2ch, env.data], trained(out))


# ---------------------------------------------------------------- Python API: restore


@row("api-inf-pixels", "api", "a numpy image with an Inf pixel", "NaN or Inf pixels")
def _(tmp: Path, env: Env) -> Case:
    image = picture()
    image[5, 5] = np.inf
    return Case(lambda: restore(image, env.ck2d, **API_GRID), [env.ck2d])


@row("api-float64-beyond-float32", "api", "float64 pixels of 1e300 (beyond float32's range), intensity check off",
     "or values too large for float32")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    image = picture().astype(np.float64) * 1e300
    return Case(lambda: restore(image, env.ck2d, intensities="as-is", **API_GRID), [env.ck2d])


@row("api-object-dtype", "api", "a numpy array of Python objects", "has dtype object, which cannot be restored")
def _(tmp: Path, env: Env) -> Case:
    return Case(lambda: restore(np.full((16, 16), None, dtype=object), env.ck2d), [env.ck2d])


@row(
    "api-one-dimensional", "api", "a 1-D array (a profile, not an image)", "is not an image: expected at least Y and X"
)
def _(tmp: Path, env: Env) -> Case:
    return Case(lambda: restore(picture()[0], env.ck2d), [env.ck2d])


@row("api-model-wants-channels", "api", "a 2-D image without a C axis for a 2-channel model",
     "has no C axis (1 channel) but the model expects 2 input channels")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    return Case(lambda: restore(picture(), env.ck2ch), [env.ck2ch])


@row("api-tile-fraction", "api", "`tile=16.5`", "tile 16.5 is not valid: expected one positive whole number")
def _(tmp: Path, env: Env) -> Case:
    return Case(lambda: restore(picture(), env.ck2d, tile=16.5), [env.ck2d])


@row("api-tile-negative", "api", "`tile=-16`", "tile -16 is not valid")
def _(tmp: Path, env: Env) -> Case:
    return Case(lambda: restore(picture(), env.ck2d, tile=-16), [env.ck2d])


@row("api-chunks-zero", "api", "`chunks=(16, 0)`", "chunks (16, 0) is not valid")
def _(tmp: Path, env: Env) -> Case:
    return Case(lambda: restore(picture(), env.ck2d, chunks=(16, 0)), [env.ck2d])


@row("api-batch-size-zero", "api", "`batch_size=0`", "batch_size must be a whole number >= 1, got 0")
def _(tmp: Path, env: Env) -> Case:
    return Case(lambda: restore(picture(), env.ck2d, batch_size=0), [env.ck2d])


@row("api-pyramid-negative", "api", "`pyramid_levels=-1`", "pyramid_levels must be 'auto' or a whole number >= 0")
def _(tmp: Path, env: Env) -> Case:
    out = tmp / "out.zarr"
    return Case(lambda: restore(picture(), env.ck2d, out, pyramid_levels=-1), [env.ck2d], [out])


@row("api-checkpoint-none", "api", "`restore(image, None)`: no checkpoint",
     "expected a checkpoint file path (or a loaded Checkpoint), got NoneType")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    return Case(lambda: restore(picture(), None))


@row("api-disk-full", "api", "the disk fills up after 3 blocks (zarr's store raises `OSError(ENOSPC)`)",
     "the disk is full (or over its quota) while writing ... then rerun the same job to resume")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    import zarr.storage._local as local

    src, out = tiff(tmp / "in.tif", picture()), tmp / "out.zarr"
    put = local._put
    chunks, full = [], []

    def full_disk(path, value, exclusive=False):  # the 4th chunk finds the disk full; so does everything after it
        if "/c/" in path.as_posix() and len(chunks) == 3:
            full.append(path)
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        if "/c/" in path.as_posix():
            chunks.append(path)
        return put(path, value, exclusive=exclusive)

    def call() -> None:
        local._put = full_disk
        try:
            restore(src, env.ck2d, out, **API_GRID)
        finally:
            local._put = put

    def rerun() -> None:  # space freed: the same job resumes after the recorded blocks and gives the same bytes
        events = []
        restore(src, env.ck2d, out, progress=events.append, **API_GRID)
        assert events[0].message.startswith("resuming: 3 of 9 blocks already done")
        reference = restore(src, env.ck2d, tmp / "reference.zarr", **API_GRID)
        assert file_digest(out / "0") == file_digest(reference / "0")

    return Case(call, [src, env.ck2d], rerun=rerun)


# ---------------------------------------------------------------- Python API: training


@row("api-one-pixel-training-image", "api", "a 1 x 1 image among the training images",
     "patch size 16 is larger than the image (1 x 1 in Y, X)")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    out = tmp / "teacher.pt"
    return Case(lambda: train_teacher(teacher_job([picture(), picture((1, 1))], out)), [], trained(out))


@row("api-volume-too-thin-for-3d", "api", "a 3-D model on a volume 4 slices deep (3-D patches need 8)",
     "an image is only 4 slice(s) deep (Z), but 3D patches need at least 8 ... train a 2D model")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    out = tmp / "teacher.pt"
    job = {**teacher_job(picture((4, 48, 48)), out, axes="ZYX"), "spatial_dims": 3}
    return Case(lambda: train_teacher(job), [], trained(out))


@row("api-3d-patch-deeper-than-volume", "api", "`patch_size: [16, 16, 16]` (given per axis) on a volume 8 slices deep",
     "patch size 16 is larger than the image depth Z=8; ... or give one side only")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    out = tmp / "teacher.pt"
    job = {**teacher_job(picture((8, 48, 48)), out, axes="ZYX", patch_size=[16, 16, 16]), "spatial_dims": 3}
    return Case(lambda: train_teacher(job), [], trained(out))


@row("api-no-room-for-validation", "api",
     "a 40 x 40 image with `patch_size: 32` (validation and training patches cannot both fit)",
     "image 0 (40 x 40 in Y, X) cannot hold a validation region ... set val_fraction to 0")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    out = tmp / "teacher.pt"
    return Case(lambda: train_teacher(teacher_job(picture((40, 40)), out, patch_size=32)), [], trained(out))


@row("api-axes-sample-and-time", "api", "`axes='STYX'`: CAREamics' sample axis S beside a time axis T",
     "name both S (samples) and T (time) ... merge the two dimensions first")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    return Case(lambda: restore(picture((2, 3, 48, 48)), env.ck2d, axes="STYX", **API_GRID), [env.ck2d])


@row("api-int64-near-limit", "api", "int64 training data around 2**62 (a spread of about 250)",
     "too large for floating point to tell them apart; subtract an offset")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    out = tmp / "teacher.pt"
    data = picture().astype(np.int64) + 2**62
    return Case(lambda: train_teacher(teacher_job(data, out)), [], trained(out))


@row("api-inf-training-data", "api", "noisy training images with Inf pixels",
     "the training data contains NaN or Inf pixels")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    out = tmp / "teacher.pt"
    noisy = np.where(picture() > 190, np.inf, picture()).astype(np.float32)
    job = teacher_job(None, out, degraded=noisy, degradation=None)
    return Case(lambda: train_teacher(job), [], trained(out))


@row("api-bool-training-data", "api", "a boolean mask given as training data", "has dtype bool")
def _(tmp: Path, env: Env) -> Case:
    out = tmp / "teacher.pt"
    return Case(lambda: train_teacher(teacher_job(picture() > 100, out)), [], trained(out))


@row("api-student-channels", "api", "a student architecture with 3 input channels for a 1-channel teacher",
     "does not match the teacher (2D, 1 -> 1 channels)")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    out = tmp / "student.pt"
    student = {"arch": "unet", "dim": 8, "num_blocks": [2, 2, 2, 2], "num_refinement_blocks": 0, "in_channels": 3}
    return Case(lambda: distill(distill_job(env, out, student=student)), [env.teacher, env.data], trained(out))


@row("api-output-is-teacher", "api", "a distillation output equal to the teacher file, with `overwrite`",
     "is one of the job's inputs: inputs are never modified")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    teacher = Path(shutil.copy(env.teacher, tmp / "teacher.pt"))
    job = distill_job(env, teacher, teacher=str(teacher), overwrite=True)
    return Case(lambda: distill(job), [teacher, env.data], [teacher.with_name("teacher.pt.state")])


@row("api-output-is-training-image", "api", "a teacher output equal to its training image, with `overwrite`",
     "is one of the job's inputs")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    data = tiff(tmp / "data.tif", picture())
    job = {**teacher_job(str(data), data), "overwrite": True}
    return Case(lambda: train_teacher(job), [data], [data.with_name("data.tif.state")])


@row("api-output-under-a-file", "api", "a checkpoint output under a regular file (checked before training)",
     "cannot create the folder of the output ... choose another output")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    blocker = tmp / "blocker"
    blocker.write_text("a file")
    return Case(lambda: distill(distill_job(env, blocker / "student.pt")), [blocker, env.teacher, env.data])


@row("api-batch-size-zero-training", "api", "`data.batch_size: 0`",
     "data.batch_size: Input should be greater than or equal to 1")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    out = tmp / "teacher.pt"
    return Case(lambda: train_teacher(teacher_job(str(env.data), out, batch_size=0)), [env.data], trained(out))


# ---------------------------------------------------------------- napari widgets' core functions


def form(tmp: Path, **changes: Any) -> dict[str, Any]:
    """The Distil widget's form as ``DistillWidget.form()`` returns it (its defaults, small sizes)."""
    from napari_skd._napari._distill import TEACHER_MODES

    return {"axes": "YX", "degradation": "gaussian", "noise": 0.1, "teacher_mode": TEACHER_MODES[0],
            "teacher_preset": "teacher-tiny", "teacher_steps": 2, "student": "unet-xs", "method": "skd", "steps": 2,
            "patch_size": 16, "batch_size": 2, "lr": 1e-3, "val_fraction": 0.1, "alpha1": 1.0, "alpha2": 0.1,
            "alpha3": 0.1, "sigma": 0.0, "levels": "enc1, enc2, enc3, latent, dec3, dec2, dec1",
            "output": str(tmp / "student.pt"), "overwrite": False, **changes}  # fmt: skip


def widget_run(values: dict, degraded: Any, clean: Any, teacher: Any) -> Any:
    """What the Distil button does: build the jobs from the form, then run the worker body."""
    from napari_skd._napari._distill import _run, build_jobs

    teacher_job, distill_job = build_jobs(values, degraded, clean, teacher)
    return _run(teacher_job, distill_job, lambda event: None, threading.Event())


@row("widget-patch-size-zero", "widget", "patch size 0 in the form",
     "data.patch_size: Input should be greater than or equal to 8")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    teacher = load_checkpoint(env.teacher)
    return Case(lambda: widget_run(form(tmp, patch_size=0), None, picture(), teacher), [env.teacher],
                trained(tmp / "student.pt"))  # fmt: skip


@row("widget-steps-zero", "widget", "0 training steps in the form",
     "train.steps: Input should be greater than or equal to 1")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    teacher = load_checkpoint(env.teacher)
    return Case(lambda: widget_run(form(tmp, steps=0), None, picture(), teacher), [env.teacher],
                trained(tmp / "student.pt"))  # fmt: skip


@row("widget-unknown-level", "widget", "a feature level `enc9` typed into the levels box", "unknown feature levels")
def _(tmp: Path, env: Env) -> Case:
    teacher = load_checkpoint(env.teacher)
    return Case(lambda: widget_run(form(tmp, levels="enc1, enc9"), None, picture(), teacher), [env.teacher],
                trained(tmp / "student.pt"))  # fmt: skip


@row("widget-nan-layer", "widget", "a layer with NaN pixels", "contains NaN or Inf pixels")
def _(tmp: Path, env: Env) -> Case:
    teacher, layer = load_checkpoint(env.teacher), picture().copy()
    layer[::8, ::8] = np.nan  # in every patch
    return Case(lambda: widget_run(form(tmp), None, layer, teacher), [env.teacher], trained(tmp / "student.pt"))


@row("widget-axes-mismatch", "widget", "axes `ZYX` typed for a 2-D layer",
     "has 3 letter(s) but the image has 2 dimension(s)")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    teacher = load_checkpoint(env.teacher)
    return Case(lambda: widget_run(form(tmp, axes="ZYX"), None, picture(), teacher), [env.teacher],
                trained(tmp / "student.pt"))  # fmt: skip


@row("widget-teacher-channels", "widget", "a 2-channel teacher loaded for a 1-channel layer",
     "the teacher takes 2 channel(s) but the data has 1")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    teacher = load_checkpoint(env.ck2ch)
    return Case(lambda: widget_run(form(tmp), None, picture(), teacher), [env.ck2ch], trained(tmp / "student.pt"))


@row("widget-output-folder", "widget", "an existing folder chosen as the student file",
     "is a folder; give a file path such as")  # fmt: skip
def _(tmp: Path, env: Env) -> Case:
    teacher, folder = load_checkpoint(env.teacher), tmp / "models"
    folder.mkdir()
    return Case(lambda: widget_run(form(tmp, output=str(folder)), None, picture(), teacher), [env.teacher, folder])


# ---------------------------------------------------------------- the catalogue test


def test_catalogue_is_large_and_ids_are_unique():
    assert len(ROWS) >= 30
    assert len({r.id for r in ROWS}) == len(ROWS)
    assert {r.surface for r in ROWS} == set(SURFACES)


@pytest.mark.parametrize("bad", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_is_refused_with_a_message(bad: Row, tmp_path: Path, env: Env, monkeypatch):
    monkeypatch.chdir(tmp_path)
    case = bad.setup(tmp_path, env)
    before = {p: file_digest(p) for p in case.inputs}
    if bad.surface == "cli":
        r = cli(*case.call, cwd=tmp_path)
        assert r.returncode == 2, f"exit {r.returncode}: {r.stderr[-3000:]}"
        assert "Traceback" not in r.stderr + r.stdout
        assert "napari-skd: error:" in r.stderr
        message = r.stderr
    else:
        with pytest.raises(SkdError) as info:
            case.call()
        assert isinstance(info.value, InputError)  # the CLI would exit with code 2 and show it
        message = str(info.value)
    at = 0
    for part in bad.expect.split(" ... "):  # the message holds these parts in this order
        assert part in message[at:], f"{part!r} not in {message[at:]!r}"
        at = message.index(part, at) + len(part)
    for p, digest in before.items():
        assert file_digest(p) == digest, f"{p} was modified"
    for p in case.outputs:
        assert not p.exists(), f"{p} was left behind"
    if case.check:
        case.check()
    if case.rerun:
        case.rerun()


# ---------------------------------------------------------------- odd inputs that are handled, not refused


def test_tiny_and_thin_images_are_restored(env):
    for shape in [(1, 1), (1, 40), (5, 3), (12, 20)]:
        image = picture(shape)
        out = restore(image, env.ck2d, tile=64, overlap=8, chunks=32)
        assert out.shape == image.shape and np.isfinite(out).all()


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16", "int32", "uint32", "int64", "uint64"])
def test_integer_extremes_are_clipped_not_wrapped(env, dtype):
    """Values at the top and bottom of the range restore to the range's ends (the random model is near identity and
    overshoots them), never to the other end: 2**31 - 1 in float32 is 2**31, which used to wrap to -2**31."""
    info = np.iinfo(dtype)
    image = np.zeros((32, 32), dtype)
    image[:, :16], image[:, 16:] = info.max, info.min
    out = restore(image, env.ck2d, dtype="input", intensities="as-is", **API_GRID)
    assert out.dtype == np.dtype(dtype)
    high, low = out[:, 2:12].astype(np.float64), out[:, 20:30].astype(np.float64)
    span = float(info.max) - float(info.min)
    assert high.min() > float(info.max) - 0.25 * span and low.max() < float(info.min) + 0.25 * span


def test_uint16_full_range_keeps_the_float_result_clipped(env):
    image = np.tile(np.array([0, 65535], np.uint16), (32, 16))
    floats = restore(image, env.ck2d, intensities="as-is", **API_GRID)
    as_input = restore(image, env.ck2d, dtype="input", intensities="as-is", **API_GRID)
    assert np.array_equal(as_input, np.clip(np.rint(floats), 0, 65535).astype(np.uint16))


def test_cli_skips_a_complete_output(env, tmp_path):
    src, out = tiff(tmp_path / "in.tif", picture()), tmp_path / "out.zarr"
    restore(src, env.ck2d, out, **API_GRID)
    before = file_digest(out)
    r = cli_ok(*restore_args(src, env.ck2d, out))
    assert "skipped (already complete)" in r.stdout and file_digest(out) == before


def test_missing_zarr_chunk_reads_as_the_fill_value(env, tmp_path):
    src = tmp_path / "sparse.zarr"
    zarr.create_array(str(src), data=picture(), chunks=(16, 16), fill_value=0)
    shutil.rmtree(src / "c" / "1")  # a whole row of chunks was never written
    expected = picture()
    expected[16:32] = 0
    assert np.array_equal(restore(src, env.ck2d, **API_GRID), restore(expected, env.ck2d, **API_GRID))


# ---------------------------------------------------------------- untrusted files
# Also covered elsewhere: tests/checkpoint/test_checkpoint.py (load_checkpoint and import_restormer refuse code
# payloads) and tests/export/test_export.py::test_package_holds_no_python_pickle (exported packages carry no pickle).


@pytest.mark.parametrize("entry", ["restore", "distill", "export", "official-legacy-pickle"])
def test_code_payload_is_refused_by_every_entry_point(entry, env, tmp_path):
    from napari_skd.export import export_bioimageio

    target = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.pt"
    if entry == "official-legacy-pickle":  # the pre-zip torch format: a bare pickle stream
        import pickle

        with open(evil, "wb") as f:
            pickle.dump({"params": {"patch_embed.proj.weight": _Payload(target)}}, f, protocol=2)
    else:
        state = torch.load(env.teacher, weights_only=True)
        state["record"] = _Payload(target)
        torch.save(state, evil)
    calls = {
        "restore": lambda: restore(picture(), evil),
        "distill": lambda: distill(distill_job(env, tmp_path / "s.pt", teacher=str(evil))),
        "export": lambda: export_bioimageio(evil, tmp_path / "model.zip"),
        "official-legacy-pickle": lambda: load_checkpoint(evil),
    }
    with pytest.raises(SkdError, match="refused to load|not a PyTorch checkpoint"):
        calls[entry]()
    assert not target.exists()


HOSTILE = r"""
import json, resource, sys, time
import torch
from napari_skd.checkpoint import load_checkpoint
from napari_skd.errors import CheckpointError

def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

base = rss_mb()
limit = 3 * 2**30  # address space left for the loads: a regression fails with MemoryError, not by swapping
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (used + limit, hard))
out = {}
for path in sys.argv[1:]:
    t0 = time.perf_counter()
    try:
        load_checkpoint(path)
        out[path] = "loaded"
    except CheckpointError as err:
        out[path] = str(err)
    out[path + ":seconds"] = time.perf_counter() - t0
out["peak_growth_mb"] = rss_mb() - base
print(json.dumps(out))
"""


def _storage_numel_inflated(src: Path, dst: Path, numel: int) -> None:
    """Rewrite a one-tensor torch zip so its pickle declares ``numel`` elements for a 16-byte storage record."""
    import struct
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("data.pkl"):
                big = struct.pack("<i", numel)
                assert b"cpuq\x06K\x04t" in data and b"K\x00K\x04\x85" in data
                data = data.replace(b"cpuq\x06K\x04t", b"cpuq\x06J" + big + b"t")
                data = data.replace(b"K\x00K\x04\x85", b"K\x00J" + big + b"\x85")
            zout.writestr(info.filename, data)


def test_hostile_headers_cannot_make_us_allocate_huge_tensors(env, tmp_path):
    """Shapes and sizes a file declares are checked before anything is built from them; memory stays bounded.

    1. A broadcast view (stride 0) declaring 2**20 x 2**20 x 3 x 3 floats (40 TB) backed by one stored number, under
       a small config: ``torch.load`` builds the view without allocating; the storage check refuses it.
    2. The same trick for every weight of a huge architecture (dim 512, ~12 GB of float32) whose shapes all agree
       with its config: the shape check alone would pass, and building it would allocate 12 GB.
    3. A storage declaring 2**30 elements for a 16-byte record: ``torch.load`` itself refuses it.
    4. A config asking for a million transformer blocks over a tiny weights table: refused before the model is
       built (even on the meta device, a million blocks would take minutes and gigabytes of Python objects).
    """
    obj = torch.load(env.teacher, weights_only=True)
    one = tmp_path / "zero_stride_wrong_shape.pt"
    state = dict(obj["state_dict"])
    state["patch_embed.proj.weight"] = torch.zeros(1).expand(2**20, 2**20, 3, 3)
    torch.save({**obj, "state_dict": state}, one)

    from napari_skd.models import ModelConfig

    big = ModelConfig(dim=512, num_blocks=(4, 6, 6, 8), heads=(1, 2, 4, 8), num_refinement_blocks=4)
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in build_model(big).state_dict().items()}
    assert sum(np.prod(s) for s in shapes.values()) * 4 > 10 * 2**30  # > 10 GB if it were built
    two = tmp_path / "zero_stride_consistent.pt"
    zero = torch.zeros(1)
    torch.save({**obj, "config": big.model_dump_json(), "state_dict": {k: zero.expand(s) for k, s in shapes.items()}},
               two)  # fmt: skip

    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(4)}, plain)
    three = tmp_path / "inflated_storage.pt"
    _storage_numel_inflated(plain, three, 2**30)

    four = tmp_path / "million_blocks.pt"
    cfg = json.loads(obj["config"])
    cfg["num_blocks"] = [10**6] * 4
    torch.save({**obj, "config": json.dumps(cfg)}, four)

    files = [one, two, three, four]
    assert all(p.stat().st_size < 2**20 for p in files)  # each file is small
    r = subprocess.run([sys.executable, "-c", HOSTILE, *map(str, files)], capture_output=True, text=True, timeout=300,
                       env=ENV)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout)
    assert "declares shape (1048576, 1048576, 3, 3) but the file stores only 4 bytes" in result[str(one)]
    assert "but the file stores only 4 bytes for it" in result[str(two)]
    assert "damaged, truncated or not a PyTorch checkpoint" in result[str(three)]
    assert "has 4000001 blocks but the file holds only" in result[str(four)]
    assert all(result[f"{p}:seconds"] < 30 for p in files)
    assert result["peak_growth_mb"] < 300  # the loads allocate nothing near what the files declare


# ---------------------------------------------------------------- docs/reliability.md


def test_every_handled_case_names_a_test_that_exists():
    sources = "".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    missing = [test for _, _, test in HANDLED if f"def {test}(" not in sources]
    assert not missing, f"HANDLED names tests that do not exist: {missing}"


def test_reliability_page_is_generated_from_this_table():
    spec = importlib.util.spec_from_file_location("make_reliability", ROOT / "docs" / "make_reliability.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "docs" / "reliability.md").read_text() == module.render(), (
        "docs/reliability.md is out of date: run python docs/make_reliability.py"
    )
    assert all(r.id in module.render() for r in ROWS)
