"""What a newcomer's small data gets: thin stacks train 3D models with shallow patches, small volumes train with the
default settings (the patch and validation region chosen and said in progress messages), and CAREamics' ``SYX``
stacks train exactly like ``TYX`` ones."""

import numpy as np
import pytest

from napari_skd import distill, train_teacher
from napari_skd.checkpoint import load_checkpoint


def volume(z: int, y: int, x: int) -> np.ndarray:
    zz, yy, xx = np.mgrid[:z, :y, :x]
    return (100 * (np.sin(zz / 3) + np.cos(yy / 4) * np.sin(xx / 5)) + 300).astype(np.float32)


def teacher_job(clean, output, model="teacher-tiny", spatial_dims=2, axes="ZYX", **data) -> dict:
    """A job that leaves patch_size and val_fraction at their defaults."""
    return {"data": {"clean": clean, "axes": axes, "degradation": {"kind": "gaussian", "sigma": 0.1},
                     "batch_size": 2, "val_patches": 2, **data},
            "model": model, "spatial_dims": spatial_dims, "output": str(output),
            "train": {"steps": 2, "warmup_steps": 1, "val_every": 2, "device": "cpu"}}  # fmt: skip


def student_job(teacher_job: dict, teacher, output) -> dict:
    return {"data": teacher_job["data"], "teacher": str(teacher), "student": "student-tiny", "output": str(output),
            "loss": {"max_positions": 64}, "train": teacher_job["train"]}  # fmt: skip


def messages(events) -> list[str]:
    return [e.message for e in events if e.phase == "prepare"]


def test_an_8_slice_stack_trains_a_3d_teacher_and_student(tmp_path):
    job = teacher_job(volume(8, 64, 64), tmp_path / "t3.pt", spatial_dims=3)
    events = []
    teacher = load_checkpoint(train_teacher(job, progress=events.append))
    assert teacher.config.spatial_dims == 3 and teacher.record["steps"] == 2
    assert teacher.record["patch"] == [8, 32, 32] and teacher.record["held_out"] == [["Y", 32]]
    assert ("patches of 8 x 32 x 32 (Z, Y, X) instead of 64, to fit the image (8 x 64 x 64 in Z, Y, X) with a "
            "validation region") in messages(events)  # fmt: skip
    assert teacher.record["metrics"]["psnr"] > 0  # validated on the held-out rows
    events = []
    student = load_checkpoint(distill(student_job(job, teacher.path, tmp_path / "s3.pt"), progress=events.append))
    assert student.config.spatial_dims == 3 and student.record["steps"] == 2 and student.record["patch"] == [8, 32, 32]
    assert any(m.startswith("patches of 8 x 32 x 32") for m in messages(events))


def test_a_cube_side_given_shrinks_along_z_only(tmp_path):
    job = teacher_job(volume(8, 64, 64), tmp_path / "t.pt", model="student-tiny", spatial_dims=3, patch_size=16)
    events = []
    ck = load_checkpoint(train_teacher(job, progress=events.append))
    assert ck.record["patch"] == [8, 16, 16]
    assert ("patches of 8 x 16 x 16 (Z, Y, X) instead of 16, to fit the image (8 x 64 x 64 in Z, Y, X)"
            in messages(events))  # fmt: skip


@pytest.mark.parametrize(
    ("spatial_dims", "patch", "held_out", "said"),
    [
        (2, [56, 56], ["Z", 3], "validation holds out the last 3 of 24 Z slices: its 58 rows cannot hold both"),
        (3, [8, 56, 56], ["Z", 8], "patches of 8 x 56 x 56 (Z, Y, X) instead of 64, to fit the image (24 x 58 x 58"),
    ],
)
def test_a_small_volume_trains_with_the_default_patch_settings(tmp_path, spatial_dims, patch, held_out, said):
    job = teacher_job(volume(24, 58, 58), tmp_path / "t.pt", spatial_dims=spatial_dims)
    events = []
    teacher = load_checkpoint(train_teacher(job, progress=events.append))
    assert teacher.record["patch"] == patch and teacher.record["held_out"] == [held_out]
    assert any(said in m for m in messages(events)), messages(events)
    assert teacher.record["metrics"]["psnr"] > 0
    if spatial_dims == 2:
        student = load_checkpoint(distill(student_job(job, teacher.path, tmp_path / "s.pt")))
        assert student.record["patch"] == patch and student.record["steps"] == 2


def test_a_syx_stack_trains_exactly_like_a_tyx_stack(tmp_path):
    stack = volume(4, 48, 48)
    by_time = load_checkpoint(train_teacher(teacher_job(stack, tmp_path / "t.pt", model="student-tiny", axes="TYX")))
    by_sample = load_checkpoint(train_teacher(teacher_job(stack, tmp_path / "s.pt", model="student-tiny", axes="SYX")))
    assert by_sample.hash == by_time.hash  # the same weights
    assert by_sample.record["metrics"] == by_time.record["metrics"]
