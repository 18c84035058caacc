"""Out-of-core tiled restoration: accuracy against whole-image inference, seams, I/O, axes, resume and refusals."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr

from conftest import file_digest, untrained
from napari_skd import restore
from napari_skd.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from napari_skd.errors import InputError
from napari_skd.io import open_image
from napari_skd.io.writers import build_pyramid, create_ome_zarr
from napari_skd.models import build_model
from napari_skd.normalize import Normalization
from napari_skd.restoration.plan import plan_blocks
from napari_skd.restoration.target import LOCK_NAME
from napari_skd.samples import load_sample

NUCLEI, _ = load_sample("nuclei2d")  # uint8-valued, 512 x 512
NORM = Normalization(low=0.0, high=float(NUCLEI.max()))
GRID = dict(tile=48, overlap=16, chunks=64)  # several blocks and several tiles per block on small images


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """Checkpoint files of tiny random models: unet-xs 2D/3D/2-channel, student-tiny 2D."""
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    paths = {
        "2d": save_checkpoint(root / "unet2d.pt", untrained("unet-xs"), norm=NORM),
        "3d": save_checkpoint(root / "unet3d.pt", untrained("unet-xs", spatial_dims=3), norm=NORM),
        "2ch": save_checkpoint(root / "unet2ch.pt", untrained("unet-xs", in_channels=2, out_channels=2)),
        "student": save_checkpoint(root / "student.pt", build_model("student-tiny"), norm=NORM),
    }
    return {k: str(v) for k, v in paths.items()}


def whole_image(path, image, halo):
    """Reference: the model on the whole image, reflect-padded by ``halo`` like the tiles' edges, then cropped."""
    c = load_checkpoint(path)
    spatial = c.config.spatial_dims
    x = np.asarray(image, np.float32)
    x = c.norm.apply(x) if c.norm else x
    x = x if x.ndim > spatial else x[None]
    x = np.pad(x, [(0, 0)] + [(halo, halo)] * spatial, mode="reflect")
    with torch.inference_mode():
        y = c.model(torch.from_numpy(x)[None])[0].numpy()
    y = y[(slice(None), *[slice(halo, -halo)] * spatial)]
    y = c.norm.invert(y) if c.norm else y
    return y if np.ndim(image) > spatial else y[0]


def read_zarr(path):
    return np.asarray(zarr.open_array(str(Path(path) / "0"), mode="r")[...])


# ---------------------------------------------------------------- accuracy and seams


def test_tiled_result_matches_whole_image_inference(ckpt):
    image = NUCLEI[:160, :144]
    tiled = restore(image, ckpt["2d"], **GRID)
    whole = whole_image(ckpt["2d"], image, 16)
    diff = np.abs(tiled - whole) / np.ptp(whole)
    # The CNN's receptive field (~90 px) exceeds the 16 px overlap, so a tile misses some far context; the
    # cosine window gives each voxel mostly from tiles where it lies >= 16 px inside. Measured: max 2e-4, mean 2e-5
    # of the output range. The limits keep a 5-10x margin yet stay below half an input grey level (1/424 = 2.4e-3).
    assert diff.max() < 2e-3 and diff.mean() < 1e-4


def test_tiled_transformer_stays_close_to_whole_image(ckpt):
    image = NUCLEI[:96, :96]
    tiled = restore(image, ckpt["student"], tile=64, overlap=16, chunks=48)
    whole = whole_image(ckpt["student"], image, 16)
    diff = np.abs(tiled - whole) / np.ptp(whole)
    # Restormer attention normalises over the whole tile (channel attention over all positions), so a tile can
    # never equal the whole image exactly; untrained random weights make this worst-case. Measured: mean 0.7 %.
    assert diff.mean() < 0.03


def _seam_positions(shape, kwargs):
    """Image coordinates (per axis) where a tile or a block starts or ends, away from the image border."""
    blocks = plan_blocks(shape, (kwargs["chunks"],) * 2, (kwargs["tile"],) * 2, kwargs["overlap"])
    seams = [set(), set()]
    for b in blocks:
        for axis in range(2):
            origin = b.read[axis].start - b.pad[axis][0]
            seams[axis].add(b.out[axis].start)
            for s in b.tile_starts[axis]:
                seams[axis] |= {origin + s, origin + s + b.tile[axis]}
    return [sorted(p for p in s if 2 <= p < n - 2) for s, n in zip(seams, shape, strict=True)]


def _seam_ratio(image, seams):
    """Mean gradient magnitude across tile and block borders / mean gradient elsewhere (both axes)."""
    ratios = []
    for axis in range(2):
        grad = np.abs(np.diff(image, axis=axis)).mean(axis=1 - axis)  # between index p-1 and p at p-1
        on = np.zeros(grad.shape, bool)
        on[[p - 1 for p in seams[axis]]] = True
        ratios.append(grad[on].mean() / grad[~on].mean())
    return max(ratios)


def test_tile_borders_are_seamless_on_a_real_image(ckpt):
    kwargs = dict(tile=64, overlap=16, chunks=128)
    tiled = restore(NUCLEI, ckpt["2d"], **kwargs)
    seams = _seam_positions(NUCLEI.shape, kwargs)
    assert min(len(s) for s in seams) > 20
    whole = whole_image(ckpt["2d"], NUCLEI, 16)
    # Borders carry no more gradient than elsewhere: the ratio matches the whole-image result's at the same places
    # (real content alone makes it differ from 1 by a few percent).
    assert _seam_ratio(tiled, seams) < min(1.05, _seam_ratio(whole, seams) + 0.01)
    # The random model is close to identity (global residual), which hides seams in its output; its correction
    # (output - input) shows them. Control: 64 x 64 tiles restored alone, without overlap or blending.
    c = load_checkpoint(ckpt["2d"])
    x = torch.from_numpy(NORM.apply(NUCLEI.astype(np.float32)))
    tiles = x.reshape(8, 64, 8, 64).permute(0, 2, 1, 3).reshape(64, 1, 64, 64)
    with torch.inference_mode():
        naive = c.model(tiles).reshape(8, 8, 64, 64).permute(0, 2, 1, 3).reshape(512, 512).numpy()
    correction = NORM.invert(naive) - NUCLEI
    assert _seam_ratio(correction, [list(range(64, 512, 64))] * 2) > 2.0  # the metric sees hard seams
    assert _seam_ratio(tiled - NUCLEI, seams) < 1.1  # blended tiles show none


# ---------------------------------------------------------------- inputs and outputs


def test_numpy_in_numpy_out_and_dtype_policy(ckpt):
    image = (NUCLEI[:80, :72].astype(np.uint16) * 300).astype(np.uint16)  # far outside the model's 0..235
    with pytest.raises(InputError, match="far from those the model was trained on"):
        restore(image, ckpt["2d"], **GRID)
    out = restore(image, ckpt["2d"], intensities="as-is", **GRID)
    assert out.dtype == np.float32 and out.shape == image.shape
    as_input = restore(image, ckpt["2d"], dtype="input", intensities="as-is", **GRID)
    assert as_input.dtype == np.uint16
    assert np.array_equal(as_input, np.clip(np.rint(out), 0, 65535).astype(np.uint16))
    with pytest.raises(InputError, match="output dtype 'complex64' is not supported"):
        restore(image, ckpt["2d"], dtype="complex64")


def test_numpy_output_keeps_the_input_axis_order(ckpt):
    image = np.stack([NUCLEI[:64, :80], NUCLEI[64:128, :80]], axis=-1)  # YXC
    out = restore(image, ckpt["2d"], axes="YXC", **GRID)
    assert out.shape == image.shape
    assert np.array_equal(out[..., 1], restore(image[..., 1], ckpt["2d"], **GRID))


def test_tiff_in_ome_zarr_out_with_metadata_and_pyramid(ckpt, tmp_path):
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, NUCLEI[:96, :128], imagej=True, resolution=(2.0, 2.0), metadata={"unit": "um"})
    before = file_digest(src)
    out = restore(src, ckpt["2d"], tmp_path / "out.zarr", pyramid_levels=2, **GRID)
    assert out == tmp_path / "out.zarr" and file_digest(src) == before
    back = open_image(out)
    assert back.axes == "YX" and back.shape == (96, 128) and back.data.dtype == np.float32
    assert back.scale == {"Y": 0.5, "X": 0.5} and back.units == {"Y": "micrometer", "X": "micrometer"}
    assert np.array_equal(back.data.compute(), restore(NUCLEI[:96, :128], ckpt["2d"], **GRID))
    meta = json.loads((out / "zarr.json").read_text())["attributes"]
    assert meta["ome"]["version"] == "0.5"
    datasets = meta["ome"]["multiscales"][0]["datasets"]
    assert [d["path"] for d in datasets] == ["0", "1", "2"]
    assert datasets[1]["coordinateTransformations"][0]["scale"] == [1.0, 1.0]
    assert datasets[2]["coordinateTransformations"][1]["translation"] == [0.75, 0.75]  # centre of 4 x 4 voxels
    assert zarr.open_array(str(out / "0"), mode="r").chunks == (64, 64)
    from napari_builtins.io._read import read_zarr_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # napari opens it without complaint
        levels, shape = read_zarr_dataset(str(out))
    assert shape == (96, 128) and [lv.shape for lv in levels] == [(96, 128), (48, 64), (24, 32)]


def test_ome_zarr_in_keeps_scale_and_translation(ckpt, tmp_path):
    src = tmp_path / "in.zarr"
    arr = create_ome_zarr(
        src, shape=(2, 72, 80), dtype="uint16", chunks=(1, 32, 32), axes="ZYX",
        scale={"Z": 2.0, "Y": 0.3, "X": 0.3}, units={"Z": "micrometer", "Y": "micrometer", "X": "micrometer"},
        translation={"Z": 10.0, "Y": 5.0, "X": -1.0},
    )  # fmt: skip
    arr[...] = NUCLEI[:144, :80].reshape(2, 72, 80)
    before = file_digest(src)
    out = restore(src, ckpt["2d"], tmp_path / "out.zarr", **GRID)
    back = open_image(out)
    assert back.axes == "ZYX" and back.scale == {"Z": 2.0, "Y": 0.3, "X": 0.3}
    assert back.translation == {"Z": 10.0, "Y": 5.0, "X": -1.0} and back.units["Z"] == "micrometer"
    assert zarr.open_array(str(out / "0"), mode="r").chunks == (1, 64, 64)
    assert file_digest(src) == before


def test_3d_model_restores_a_volume_in_3d_blocks(ckpt):
    rng = np.random.default_rng(1)
    volume = rng.random((24, 40, 48), dtype=np.float32) * 200
    out = restore(volume, ckpt["3d"], axes="ZYX", tile=32, overlap=8, chunks=(16, 24, 24))
    diff = np.abs(out - whole_image(ckpt["3d"], volume, 8)) / 200
    assert out.shape == volume.shape and diff.max() < 5e-3 and diff.mean() < 5e-4  # measured 5e-4 and 4e-5


def test_2d_model_runs_slice_wise_over_a_volume(ckpt):
    volume = NUCLEI[:192, :80].reshape(3, 64, 80)
    out = restore(volume, ckpt["2d"], axes="ZYX", **GRID)
    for z in range(3):
        assert np.array_equal(out[z], restore(volume[z], ckpt["2d"], **GRID))


def test_channels_go_to_the_model_or_one_by_one(ckpt):
    image = np.stack([NUCLEI[:64, :64], NUCLEI[64:128, :64]]).astype(np.float32) / 212
    both = restore(image, ckpt["2ch"], axes="CYX", **GRID)
    assert both.shape == (2, 64, 64)
    assert np.abs(both - whole_image(ckpt["2ch"], image, 16)).max() < 1e-3  # measured 5e-5 (data range 1)
    single = restore(image, ckpt["2d"], axes="CYX", intensities="as-is", **GRID)  # its model saw 0..235
    assert np.array_equal(single[1], restore(image[1], ckpt["2d"], intensities="as-is", **GRID))
    with pytest.raises(InputError, match="has 3 channels .* but the model expects 2 input channels"):
        restore(np.zeros((3, 64, 64), np.float32), ckpt["2ch"], axes="CYX")


def test_out_of_memory_halves_the_tile_and_reports_it(ckpt):
    class SmallMemory(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config, self.multiple = inner, inner.config, inner.multiple

        def forward(self, x):
            if x.shape[-1] > 32:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return self.inner(x)

    c = load_checkpoint(ckpt["2d"])
    small = Checkpoint(model=SmallMemory(c.model), config=c.config, role="teacher", norm=c.norm)
    events = []
    out = restore(NUCLEI[:96, :96], small, tile=64, overlap=16, chunks=80, progress=events.append)
    assert any("out of memory" in e.message and "(64x64 -> 32x32 voxels)" in e.message for e in events)
    assert np.array_equal(out, restore(NUCLEI[:96, :96], c, tile=32, overlap=16, chunks=80))


# ---------------------------------------------------------------- resume and safety


@pytest.fixture(scope="module")
def job(ckpt, tmp_path_factory):
    """A TIFF input and the store of an uninterrupted run (6 blocks)."""
    root = tmp_path_factory.mktemp("job")
    src = root / "in.tif"
    tifffile.imwrite(src, NUCLEI[:128, :160])
    digest = file_digest(src)
    reference = restore(src, ckpt["2d"], root / "reference.zarr", **GRID)
    return {"src": src, "digest": digest, "reference": reference, "ckpt": ckpt["2d"]}


def test_cancelled_run_resumes_to_the_same_bytes(job, tmp_path):
    cancel, events = threading.Event(), []

    def stop_after_two(event):
        events.append(event)
        if event.phase == "restore" and event.step >= 2:
            cancel.set()

    out = tmp_path / "out.zarr"
    restore(job["src"], job["ckpt"], out, progress=stop_after_two, cancel=cancel, **GRID)
    assert events[-1].phase == "stopped" and 2 <= events[-1].step < 6
    resumed = []
    restore(job["src"], job["ckpt"], out, progress=resumed.append, **GRID)
    assert resumed[0].message.startswith(f"resuming: {events[-1].step} of 6 blocks already done")
    assert file_digest(out) == file_digest(job["reference"])
    assert file_digest(job["src"]) == job["digest"]


KILLER = """
import os, signal, sys
from napari_skd import restore

def die(event):
    if event.phase == "restore" and event.step >= 3:
        os.kill(os.getpid(), signal.SIGKILL)

restore(sys.argv[1], sys.argv[2], sys.argv[3], tile=48, overlap=16, chunks=64, progress=die)
"""


def test_killed_run_resumes_to_the_same_bytes(job, tmp_path):
    out = tmp_path / "out.zarr"
    r = subprocess.run([sys.executable, "-c", KILLER, str(job["src"]), job["ckpt"], str(out)], capture_output=True)
    assert r.returncode == -signal.SIGKILL, r.stderr.decode()
    lock = json.loads((out / LOCK_NAME).read_text())  # left behind by the dead process
    assert lock["host"] == socket.gethostname()
    events = []
    restore(job["src"], job["ckpt"], out, progress=events.append, **GRID)  # takes the stale lock over
    # 3 blocks were reported; the writer thread may have recorded a 4th just before the kill
    assert re.match(r"resuming: [34] of 6 blocks already done", events[0].message)
    assert file_digest(out) == file_digest(job["reference"])
    assert not (out / LOCK_NAME).exists() and file_digest(job["src"]) == job["digest"]


def test_complete_or_foreign_outputs_are_refused_without_overwrite(job, tmp_path):
    out = tmp_path / "out.zarr"
    restore(job["src"], job["ckpt"], out, **GRID)
    with pytest.raises(InputError, match="already complete for this same job; pass overwrite=True"):
        restore(job["src"], job["ckpt"], out, **GRID)
    with pytest.raises(InputError, match=r"complete result of a different job \(differs in: halo, overlap\)"):
        restore(job["src"], job["ckpt"], out, **{**GRID, "overlap": 8})
    restore(job["src"], job["ckpt"], out, overwrite=True, **GRID)
    assert file_digest(out) == file_digest(job["reference"])
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    for overwrite in (False, True):  # what napari-skd did not write is never replaced, whatever the flag
        with pytest.raises(InputError, match="exists and was not written by napari-skd .* even with overwrite"):
            restore(job["src"], job["ckpt"], other, overwrite=overwrite, **GRID)
    assert (other / "notes.txt").read_text() == "mine" and sorted(p.name for p in other.iterdir()) == ["notes.txt"]


def test_a_second_concurrent_writer_is_refused(job, tmp_path):
    out, started, release, errors = tmp_path / "out.zarr", threading.Event(), threading.Event(), []

    def hold(event):
        if event.phase == "restore" and event.step == 1:
            started.set()
            release.wait(60)

    def first():
        try:
            restore(job["src"], job["ckpt"], out, progress=hold, **GRID)
        except Exception as err:  # reported below
            errors.append(err)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert started.wait(60)
        with pytest.raises(InputError, match=f"being written by another job \\(pid {os.getpid()} on"):
            restore(job["src"], job["ckpt"], out, **GRID)
    finally:
        release.set()
        thread.join()
    assert not errors and file_digest(out) == file_digest(job["reference"])


def test_stale_lock_is_taken_over_but_another_hosts_lock_is_not(job, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out = tmp_path / "out.zarr"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    restore(job["src"], job["ckpt"], out, **GRID)
    assert file_digest(out) == file_digest(job["reference"])
    elsewhere = tmp_path / "elsewhere.zarr"
    elsewhere.mkdir()
    (elsewhere / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "node-17"}))
    with pytest.raises(InputError, match="locked by a job on host node-17"):
        restore(job["src"], job["ckpt"], elsewhere, **GRID)


def test_dask_backend_with_two_workers_gives_the_same_bytes(job, tmp_path):
    out = tmp_path / "out.zarr"
    events = []
    restore(job["src"], job["ckpt"], out, distributed=2, pyramid_levels=2, progress=events.append, **GRID)
    assert [e.step for e in events if e.phase == "restore"][-1] == 6
    assert file_digest(out / "0") == file_digest(job["reference"] / "0")  # the chunks; the record notes "dask"
    built = shutil.copytree(job["reference"], tmp_path / "built.zarr")  # the same pyramid, built at the end
    build_pyramid(built, 2)
    for level in ("1", "2"):  # filled by the main process as the workers' blocks came back
        assert file_digest(out / level) == file_digest(built / level)
    assert file_digest(job["src"]) == job["digest"]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"axes": "QX"}, "unknown letter"),
        ({"tile": 4}, "tile 4 is smaller than the model's multiple 8"),
        ({"tile": 16, "overlap": 16}, "must be larger than the overlap 16"),
        ({"chunks": (64, 0)}, "chunks .* is not valid"),
        ({"window": "box"}, "unknown window 'box'"),
    ],
)
def test_bad_options_say_what_to_do(ckpt, kwargs, expected):
    with pytest.raises(InputError, match=expected):
        restore(NUCLEI[:64, :64], ckpt["2d"], **kwargs)


def test_output_overlapping_the_input_is_refused(job, tmp_path):
    with pytest.raises(InputError, match="is the input .* inputs are never modified"):
        restore(job["src"], job["ckpt"], job["src"], **GRID)
    src = tmp_path / "in.zarr"
    zarr.create_array(str(src), data=NUCLEI[:64, :64])
    with pytest.raises(InputError, match="overlaps it"):
        restore(src, job["ckpt"], src / "restored", overwrite=True)
    with pytest.raises(InputError, match="distributed restoration needs the input as a file path"):
        restore(NUCLEI[:64, :64], job["ckpt"], tmp_path / "o.zarr", distributed=2)
    assert file_digest(job["src"]) == job["digest"]


def test_read_only_output_folder_is_refused(job, tmp_path):
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    try:
        if os.geteuid() == 0:  # root ignores permissions: make the folder immutable instead, if possible
            immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
            if not immutable:
                pytest.skip("running as root without chattr: cannot make a read-only folder")
        with pytest.raises(InputError, match="cannot write the output .*choose a folder you can write to"):
            restore(job["src"], job["ckpt"], folder / "out.zarr", **GRID)
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def test_corrupt_input_chunk_stops_with_a_message_and_the_output_resumes(job, tmp_path):
    src = tmp_path / "in.zarr"
    zarr.create_array(str(src), data=NUCLEI[:128, :160], chunks=(32, 32))
    chunk = src / "c" / "3" / "4"  # read by the last two blocks (their regions reach x >= 128)
    good = chunk.read_bytes()
    chunk.write_bytes(b"not a zstd frame" * 4)
    out = tmp_path / "out.zarr"
    with pytest.raises(InputError, match="cannot read pixels from .*damaged"):
        restore(src, job["ckpt"], out, **GRID)
    assert not (out / LOCK_NAME).exists()
    chunk.write_bytes(good)  # repaired in place
    events = []
    restore(src, job["ckpt"], out, progress=events.append, **GRID)
    assert events[0].message.startswith("resuming: 4 of 6")
    assert np.array_equal(read_zarr(out), read_zarr(job["reference"]))


# ---------------------------------------------------------------- GPU (run by benchmarks/gpu_check.sh)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_restore_matches_cpu_within_mixed_precision(ckpt, tmp_path):
    image = NUCLEI[:256, :192]
    cpu = restore(image, ckpt["2d"], device="cpu", **GRID)
    gpu = restore(image, ckpt["2d"], device="cuda", batch_size=4, **GRID)
    assert np.abs(gpu - cpu).max() / np.ptp(cpu) < 0.02  # bf16/fp16 autocast on the GPU
    out = restore(image, ckpt["2d"], tmp_path / "gpu.zarr", device="cuda", **GRID)
    assert np.array_equal(read_zarr(out), restore(image, ckpt["2d"], device="cuda", **GRID))
