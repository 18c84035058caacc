"""``distill(config)``: a student distilled from a teacher (or trained by a baseline method), saved as a checkpoint."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import Checkpoint, load_checkpoint
from ..data.patches import PatchPlan
from ..data.sources import load_volumes
from ..data.stats import estimate_percentiles
from ..device import channels_last
from ..errors import InputError
from ..models import FEATURE_LEVELS
from ..progress import ProgressEvent, ProgressFn, emit
from .checks import output_paths, refuse_foreign, refuse_input_as_output, validated
from .config import DistillJob
from .init import keep_best, start_from
from .labels import labels_ahead, teacher_labels
from .objectives import METHOD_TERMS, DistillObjective, StudentWithProjections
from .prepare import build_network, make_sampler, patch_plan, planned_steps, setup_device
from .record import evaluate, fingerprint, finish, held_out_record, training_record
from .trainer import Trainer, rank


def distill(
    config: DistillJob | dict, *, progress: ProgressFn | None = None, cancel: threading.Event | None = None
) -> Path:
    """Distil a student from a teacher (soft knowledge distillation, or a baseline) and save it."""
    job = validated(DistillJob, config)
    output, state_path = output_paths(job.output, job.overwrite)
    teacher_path = getattr(job.teacher, "path", job.teacher)
    refuse_input_as_output(output, job.data.degraded, job.data.clean, teacher_path)
    refuse_foreign(output)
    device, where = setup_device(job.train.device)
    teacher_ck = job.teacher if isinstance(job.teacher, Checkpoint) else load_checkpoint(job.teacher)
    emit(progress, ProgressEvent("prepare", 0, planned_steps(job), message="reading data and normalisation statistics"))
    degraded, clean = load_volumes(job.data.degraded, job.data.axes), load_volumes(job.data.clean, job.data.axes)
    alone = not METHOD_TERMS[job.loss.method].uses_teacher
    if alone and clean is None:
        raise InputError(
            f"method {job.loss.method!r} learns from ground truth only: give data.clean (or pick a distillation method)"
        )
    if alone and job.data.unlabelled is not None:
        raise InputError(f"method {job.loss.method!r} uses no teacher, so it cannot learn from data.unlabelled; "
                         "remove it or pick a distillation method")  # fmt: skip
    unlabelled = load_volumes(job.data.unlabelled, job.data.axes)
    channels = (degraded or clean)[0].shape[1]
    tcfg = teacher_ck.config
    if tcfg.in_channels != channels:
        raise InputError(
            f"the teacher takes {tcfg.in_channels} channel(s) but the data has {channels}; check data.axes (C) "
            "or use a teacher trained on this kind of image"
        )
    norm = None if teacher_ck.per_input else teacher_ck.norm
    norm = norm or estimate_percentiles(
        degraded or clean, job.data.pmin, job.data.pmax, seed=job.train.seed, channel_axis=1
    )
    if teacher_ck.per_input:  # a generalist sees this data set through its percentiles, as the student does
        teacher_ck = dataclasses.replace(teacher_ck, norm=norm, record={**teacher_ck.record, "normalization": "data"})
    teacher = teacher_ck.model.to(device, memory_format=channels_last(tcfg.spatial_dims)).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    torch.manual_seed(job.train.seed)
    start = None
    if job.student_init is not None:
        student, start = start_from(job.student_init, tcfg.in_channels, tcfg.spatial_dims, "student_init")
    else:
        student = build_network(job.student, tcfg.in_channels, tcfg.out_channels, tcfg.spatial_dims)
    scfg = student.config
    shape = (scfg.spatial_dims, scfg.in_channels, scfg.out_channels)
    if shape != (tcfg.spatial_dims, tcfg.in_channels, tcfg.out_channels):
        raise InputError(
            f"the student ({scfg.spatial_dims}D, {scfg.in_channels} -> {scfg.out_channels} channels) does not "
            f"match the teacher ({tcfg.spatial_dims}D, {tcfg.in_channels} -> {tcfg.out_channels} channels); "
            "give the student the teacher's dimensionality and channels, or use a preset name"
        )
    plan = patch_plan(job.data, degraded, clean, student, progress, planned_steps(job), unlabelled)
    _check_levels(teacher, student, job.loss.levels, plan, device)
    module = StudentWithProjections(student, tcfg.feature_channels, job.loss.levels, job.loss.method)
    name = job.student if isinstance(job.student, str) else "a custom student"
    emit(progress, ProgressEvent("prepare", 0, planned_steps(job), message=f"distilling {name} with method "
                                 f"{job.loss.method} from the teacher {teacher_ck.path or ''}, {where}"))  # fmt: skip
    if unlabelled is not None and unlabelled[0].shape[1] != channels:
        raise InputError(f"data.unlabelled has {unlabelled[0].shape[1]} channel(s) but data.degraded/clean has "
                         f"{channels}; give images of the same kind")  # fmt: skip
    ahead = labels_ahead(job.loss, (degraded or []) + (unlabelled or []) or None)
    ahead = ahead and degraded is not None
    t_label = time.perf_counter()
    label = (lambda vols: teacher_labels(teacher_ck, vols, device, progress)) if ahead else (lambda vols: None)
    sampler = make_sampler(job.data, plan, degraded, clean, norm, job.train.seed, labels=label(degraded))
    extra = None
    if unlabelled is not None:  # its patches join the same batches: the same patch shape, no validation
        extra = make_sampler(job.data, plan, unlabelled, None, norm, job.train.seed + 1, 0.0, label(unlabelled))
    label_seconds = time.perf_counter() - t_label if ahead else 0.0
    objective = DistillObjective(teacher, job.loss, sampler, job.data.batch_size, device, rank(), extra,
                                 job.data.unlabelled_share)  # fmt: skip
    best = keep_best(job.train.keep_best, job.student_init)
    trainer = Trainer(module, job.train, device, state_path, fingerprint(job, teacher_ck.hash), best)
    resumed = trainer.try_resume()
    t0 = time.perf_counter()
    done = trainer.run(objective, lambda: evaluate(student, sampler.validation, device, teacher), progress, cancel)
    record = training_record(job, trainer, done, resumed, time.perf_counter() - t0, device)
    record.update(method=job.loss.method, loss=job.loss.model_dump(), teacher_path=str(teacher_path),
                  loss_weights=dict(objective.weights), teacher_labels="ahead" if ahead else "live",
                  label_seconds=round(label_seconds, 2), patch=list(plan.sides),
                  held_out=held_out_record(plan), init=start)  # fmt: skip
    return finish(trainer, done, output, student, "student", norm, record, teacher_ck, progress)


def _check_levels(teacher: nn.Module, student: nn.Module, levels: tuple[str, ...], plan: PatchPlan, device) -> None:
    """Every distilled level must have the same spatial size in student and teacher (on the training patch)."""
    x = torch.zeros(1, teacher.config.in_channels, *plan.sides, device=device)
    with torch.no_grad():
        _, tf = teacher(x, return_features=True)
        _, sf = student.to(device)(x, return_features=True)
    bad = [
        f"{lv} (teacher {tuple(tf[i].shape[2:])}, student {tuple(sf[i].shape[2:])})"
        for lv in levels
        if tf[(i := FEATURE_LEVELS.index(lv))].shape[2:] != sf[i].shape[2:]
    ]
    if bad:
        raise InputError(f"the student's features do not match the teacher's at levels: {', '.join(bad)}; "
                         "choose other loss.levels or a student of the same depth")  # fmt: skip
