"""Pretraining on the corpus stream (teacher alone, student distilled from it) and turning it into a shipped file."""

import torch

from napari_skd.checkpoint import load_checkpoint
from napari_skd.pretrained.pretrain import parser, plateau, run
from napari_skd.pretrained.ship import annotate, max_output_diff, to_float16

SMALL = ["--steps", "3", "--synthetic", "3", "--natural-crops", "0", "--size", "64", "--patch", "32", "--batch", "2",
         "--workers", "1", "--val-every", "2", "--warmup", "1", "--device", "cpu", "--max-time", "10m"]  # fmt: skip


def test_pretraining_records_the_corpus_and_the_validation_curve(tmp_path):
    cache = str(tmp_path / "corpus.npz")
    teacher = run(parser().parse_args(["teacher", "--model", "student-tiny", "--out", str(tmp_path / "t.pt"),
                                       "--cache", cache, *SMALL]))  # fmt: skip
    ck = load_checkpoint(teacher)
    rec = ck.record
    assert ck.per_input and rec["steps"] == 3 and rec["completed"] and len(rec["corpus_hash"]) == 64
    assert [v["step"] for v in rec["validations"]] == [2, 3]
    assert {"psnr_synthetic", "psnr_natural", "psnr_input_natural"} <= set(rec["validations"][-1])
    assert not (tmp_path / "t.pt.state").exists()  # finished: the resumable state is gone
    student = run(parser().parse_args(["student", "--model", "unet-xs", "--teacher", str(teacher),
                                       "--out", str(tmp_path / "s.pt"), "--cache", cache, *SMALL]))  # fmt: skip
    s = load_checkpoint(student)
    assert s.role == "student" and s.teacher_hash == ck.hash and s.record["method"] == "skd"
    assert s.record["corpus_hash"] == rec["corpus_hash"]  # the same stream, read back from the cache


def test_float16_storage_is_checked_against_float32(tmp_path):
    src = run(parser().parse_args(["teacher", "--model", "unet-xs", "--out", str(tmp_path / "t.pt"), *SMALL]))
    probe = torch.rand(2, 1, 32, 32)
    diff = to_float16(src, tmp_path / "t16.pt", probe)
    half = load_checkpoint(tmp_path / "t16.pt")
    assert diff <= 1e-3 and half.record["storage"] == "float16"
    assert diff == max_output_diff(load_checkpoint(src).model, half.model, probe)
    raw = torch.load(tmp_path / "t16.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in raw["state_dict"].values() if v.is_floating_point())
    annotate(tmp_path / "t16.pt", tmp_path / "s16.pt", role="student", name="pretrained:x")
    s = load_checkpoint(tmp_path / "s16.pt")
    assert s.role == "student" and s.record["role"] == "student" and s.record["name"] == "pretrained:x"
    assert s.hash == half.hash  # the weights are untouched


def test_plateau_reads_the_gain_over_the_last_fifth():
    curve = [{"seconds": t, "psnr": p} for t, p in [(10, 20.0), (50, 25.0), (80, 26.0), (90, 26.05), (100, 26.08)]]
    assert plateau(curve, "psnr") == {"reached": True, "last_fifth_gain_db": 0.08}
    curve[-1]["psnr"] = 27.0
    assert plateau(curve, "psnr") == {"reached": False, "last_fifth_gain_db": 1.0}


def test_a_corpus_cache_of_other_settings_is_refused(tmp_path):
    import pytest

    from napari_skd.errors import InputError

    cache = str(tmp_path / "corpus.npz")
    run(
        parser().parse_args(
            ["teacher", "--model", "unet-xs", "--out", str(tmp_path / "a.pt"), "--cache", cache, *SMALL]
        )
    )
    other = [*SMALL[:2], "--synthetic", "5", *SMALL[4:]]
    with pytest.raises(InputError, match="built with other settings"):
        run(parser().parse_args(["teacher", "--model", "unet-xs", "--out", str(tmp_path / "b.pt"), "--cache", cache,
                                 *other]))  # fmt: skip
