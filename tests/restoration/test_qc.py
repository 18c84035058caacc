"""Fidelity QC: the teacher on a sample of the output blocks, the student's PSNR against it, stored with the output."""

import math

import numpy as np
import pytest
import tifffile
import torch
import zarr

from conftest import Damaged, file_digest, untrained
from napari_skd import restore
from napari_skd.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from napari_skd.cli import main
from napari_skd.errors import InputError
from napari_skd.normalize import Normalization
from napari_skd.restoration.fidelity import MAX_PSNR, block_psnr
from napari_skd.restoration.qc import choose_blocks
from napari_skd.restoration.target import read_qc
from napari_skd.samples import load_sample

NUCLEI, _ = load_sample("nuclei2d")
NORM = Normalization(low=0.0, high=float(NUCLEI.max()))
GRID = dict(tile=48, overlap=16, chunks=64)
BRIGHT = (slice(70, 120), slice(140, 180))  # inside block (1, 2) of a 192 x 192 image with 64-voxel blocks


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("qc")
    torch.manual_seed(0)
    teacher = save_checkpoint(root / "teacher.pt", untrained("unet-xs"), norm=NORM)
    t = load_checkpoint(teacher)
    damaged = Checkpoint(model=Damaged(t.model), config=t.config, role="student", norm=NORM)
    image = (NUCLEI[:192, :192] * 0.8).astype(np.float32)  # nuclei stay below 0.9 of the range...
    image[BRIGHT] = NUCLEI.max()  # ...except one bright patch, in one block
    src = root / "in.tif"
    tifffile.imwrite(src, image)
    return {
        "teacher": teacher,
        "damaged": damaged,
        "src": src,
        "image": image,
        "3d": untrained("unet-xs", spatial_dims=3),
    }


def test_block_psnr_by_hand():
    # mean squared difference (0 + 0.1^2) / 2 = 0.005 -> 10 log10(1 / 0.005) = 23.0103 dB; largest |diff| 0.1
    psnr, largest = block_psnr(np.array([0.0, 0.1]), np.array([0.0, 0.0]))
    assert psnr == pytest.approx(10 * math.log10(200))
    assert largest == pytest.approx(0.1)
    assert block_psnr(np.ones(4), np.ones(4)) == (MAX_PSNR, 0.0)


def test_sample_holds_the_hardest_blocks_and_a_seeded_draw():
    hardness = [0.1, 0.9, 0.2, 0.8, 0.3, 0.0, 0.5, 0.4, 0.05, 0.6]
    sample = choose_blocks(hardness, 0.4, seed=3)  # 4 blocks: the 2 hardest (1, 3) and 2 drawn from the rest
    assert len(sample) == 4
    assert [i for i, why in sample if why == "hardest"] == [1, 3]
    assert choose_blocks(hardness, 0.4, seed=3) == sample  # seeded
    assert choose_blocks(hardness, 0.01) == [(1, "hardest")]  # at least one block: the hardest
    assert len(choose_blocks(hardness, 1.0)) == 10


def test_a_student_identical_to_its_teacher_has_maximal_fidelity(models, tmp_path):
    out = restore(models["src"], models["teacher"], tmp_path / "out.zarr", qc_teacher=models["teacher"],
                  qc_fraction=0.3, **GRID)  # fmt: skip
    report = read_qc(out)
    assert report.blocks_total == 9 and len(report.blocks) == 3  # ceil(0.3 * 9)
    assert all(b.psnr == MAX_PSNR and b.max_abs == 0 for b in report.blocks)
    assert report.summary()["psnr_min"] == MAX_PSNR
    assert "identical" in report.lines()[0]
    attrs = zarr.open_group(str(out), mode="r").attrs.asdict()
    assert attrs["qc"]["summary"]["blocks_checked"] == 3 and attrs["napari_skd"]["complete"]


def test_a_damaged_student_has_low_fidelity_in_the_damaged_region(models, tmp_path):
    events = []
    out = restore(models["src"], models["damaged"], tmp_path / "out.zarr", qc_teacher=models["teacher"],
                  qc_fraction=0.3, progress=events.append, **GRID)  # fmt: skip
    report = read_qc(out)
    worst = report.worst(1)[0]
    assert worst.key == "1.2" and worst.position == {"Y": [64, 128], "X": [128, 192]}
    assert worst.chosen == "hardest" and worst.psnr < 20 and worst.max_abs == pytest.approx(0.5, abs=1e-5)
    assert all(b.psnr == MAX_PSNR for b in report.blocks if b.key != "1.2")  # elsewhere it is the teacher
    grid, step = report.heatmap()
    assert grid.shape == (3, 3) and step == {"Y": 64, "X": 64}
    assert np.unravel_index(np.argmax(grid), grid.shape) == (1, 2) and grid.sum() == pytest.approx(grid[1, 2])
    assert any(e.phase == "qc" for e in events)
    # the smallest sample is the single hardest block: the damage is never missed
    out = restore(models["src"], models["damaged"], tmp_path / "one.zarr", qc_teacher=models["teacher"],
                  qc_fraction=0.01, **GRID)  # fmt: skip
    assert [b.key for b in read_qc(out).blocks] == ["1.2"]


def test_qc_added_to_a_finished_output_leaves_its_pixels(models, tmp_path):
    out = restore(models["src"], models["damaged"], tmp_path / "out.zarr", **GRID)
    assert read_qc(out) is None
    before = file_digest(out / "0")
    restore(models["src"], models["damaged"], out, qc_teacher=models["teacher"], qc_fraction=0.2, **GRID)
    assert file_digest(out / "0") == before
    assert read_qc(out).worst(1)[0].key == "1.2"


def test_qc_in_a_tiff_record(models, tmp_path):
    out = restore(models["src"], models["damaged"], tmp_path / "out.tif", qc_teacher=models["teacher"],
                  qc_fraction=0.2, **GRID)  # fmt: skip
    assert read_qc(out).worst(1)[0].key == "1.2"
    with pytest.raises(InputError, match="rewrites it: pass overwrite"):
        restore(models["src"], models["damaged"], out, qc_teacher=models["teacher"], **GRID)


def test_qc_refusals(models, tmp_path):
    with pytest.raises(InputError, match="qc_fraction 0 is not valid"):
        restore(models["src"], models["teacher"], tmp_path / "a.zarr", qc_teacher=models["teacher"], qc_fraction=0)
    with pytest.raises(InputError, match="fidelity QC is recorded with the output"):
        restore(models["image"], models["teacher"], qc_teacher=models["teacher"])
    teacher3d = save_checkpoint(tmp_path / "t3d.pt", models["3d"], norm=NORM)
    with pytest.raises(InputError, match="QC teacher does not fit this image"):
        restore(models["src"], models["teacher"], tmp_path / "b.zarr", qc_teacher=teacher3d)
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "b.zarr").exists()  # refused before writing


def test_cli_prints_the_summary_and_the_worst_blocks(models, tmp_path, capsys):
    damaged = save_checkpoint(tmp_path / "student.pt", models["damaged"].model.inner, norm=NORM)
    out = tmp_path / "out.zarr"
    code = main(["--quiet", "restore", str(models["src"]), "--checkpoint", str(damaged), "--output", str(out),
                 "--tile", "48", "--overlap", "16", "--chunks", "64", "--qc-teacher", str(models["teacher"]),
                 "--qc-fraction", "0.5"])  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0
    assert "fidelity to the teacher (teacher.pt) on 5 of 9 blocks" in text and "worst blocks:" in text
    assert main(["restore", str(models["src"]), "--checkpoint", str(damaged), "--output", str(tmp_path / "c.zarr"),
                 "--qc-fraction", "2"]) == 2  # fmt: skip
    assert "qc_fraction 2.0 is not valid" in capsys.readouterr().err


def test_heat_map_cells_and_channels_restored_one_by_one():
    from napari_skd.restoration.fidelity import BlockFidelity, FidelityReport

    def block(c, y, psnr):
        return BlockFidelity(f"{c}/{y}.0", {"C": c, "Y": [64 * y, 64 * y + 64], "X": [0, 64]}, psnr, 0.1, 0.1, "random")

    report = FidelityReport("t", "t.pt", "s", 0.5, 0, 4, "YX", {"Y": 64, "X": 64}, {"Y": 100, "X": 64})
    report.blocks = [block(0, 1, 40.0), block(1, 1, 20.0), block(1, 0, MAX_PSNR)]
    grid, step = report.heatmap()
    assert grid.shape == (2, 1) and step == {"Y": 64, "X": 64}  # 100 rows in 64-row blocks: 2 cells
    assert grid[1, 0] == pytest.approx(0.1)  # the worse channel: 20 dB is an RMS difference of 0.1
    assert grid[0, 0] == 0  # identical
