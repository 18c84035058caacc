"""``train_teacher(config)``: a validated teacher job in, the saved teacher checkpoint out."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import torch

from ..data.sources import load_volumes
from ..data.stats import estimate_percentiles
from ..errors import InputError
from ..progress import ProgressEvent, ProgressFn, emit
from .checks import output_paths, refuse_foreign, refuse_input_as_output, validated
from .config import TeacherJob
from .init import keep_best, start_from
from .objectives import TeacherObjective
from .prepare import build_network, make_sampler, patch_plan, planned_steps, setup_device, warn_if_slow
from .record import evaluate, fingerprint, finish, held_out_record, training_record
from .trainer import Trainer, rank


def train_teacher(
    config: TeacherJob | dict, *, progress: ProgressFn | None = None, cancel: threading.Event | None = None
) -> Path:
    """Train a teacher and save it; supervised with clean data, else self-supervised (Noise2Void)."""
    job = validated(TeacherJob, config)
    output, state_path = output_paths(job.output, job.overwrite)
    refuse_input_as_output(output, job.data.degraded, job.data.clean)
    refuse_foreign(output)
    device, where = setup_device(job.train.device)
    emit(progress, ProgressEvent("prepare", 0, planned_steps(job), message="reading data and normalisation statistics"))
    degraded, clean = load_volumes(job.data.degraded, job.data.axes), load_volumes(job.data.clean, job.data.axes)
    has_target = clean is not None
    self_sup = job.mode == "self-supervised" or (job.mode == "auto" and not has_target)
    if job.mode == "supervised" and not has_target:
        raise InputError("supervised teacher training needs clean images; give data.clean or use mode: self-supervised")
    if self_sup and degraded is None:
        raise InputError("self-supervised training learns from noisy images: give data.degraded")
    if job.data.unlabelled is not None:
        raise InputError(
            "data.unlabelled is for distillation (the teacher labels those images); to train a teacher on them, "
            "add them to data.degraded and train self-supervised"
        )
    norm = estimate_percentiles(degraded or clean, job.data.pmin, job.data.pmax, seed=job.train.seed, channel_axis=1)
    channels = (degraded or clean)[0].shape[1]
    torch.manual_seed(job.train.seed)
    start = None
    if job.init is not None:
        model, start = start_from(job.init, channels, job.spatial_dims, "init")
    else:
        model = build_network(job.model, channels, channels, job.spatial_dims)
    plan = patch_plan(job.data, degraded, clean, model, progress, planned_steps(job))
    warn_if_slow(model, plan, job.data, job.train, device, progress)
    sampler = make_sampler(
        job.data, plan, degraded if self_sup or degraded is not None else None, clean, norm, job.train.seed
    )
    objective = TeacherObjective(
        sampler, job.data.batch_size, device, self_sup, job.n2v_fraction, job.train.seed, rank()
    )
    mode = "self-supervised (Noise2Void)" if self_sup else "supervised (L1 to the clean images)"
    emit(progress, ProgressEvent("prepare", 0, planned_steps(job), message=f"training a teacher, {mode}, {where}"))
    trainer = Trainer(model, job.train, device, state_path, fingerprint(job), keep_best(job.train.keep_best, job.init))
    resumed = trainer.try_resume()
    t0 = time.perf_counter()

    def validate() -> dict[str, float]:
        return evaluate(model, sampler.validation, device) | objective.validation_loss(model)

    done = trainer.run(objective, validate, progress, cancel)
    record = training_record(job, trainer, done, resumed, time.perf_counter() - t0, device)
    record.update(mode=mode, patch=list(plan.sides), held_out=held_out_record(plan), init=start)
    return finish(trainer, done, output, model, "teacher", norm, record, None, progress)
