"""The entry points ``train_teacher(config)`` and ``distill(config)``: validated job in, saved checkpoint out."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from pydantic import BaseModel, ValidationError
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn

from ..checkpoint import Checkpoint, load_checkpoint, save_checkpoint, written_by_us
from ..data.patches import PatchPlan, plan_patches
from ..data.sampler import Batch, PatchSampler, check_pairs
from ..data.sources import load_volumes
from ..data.stats import estimate_percentiles
from ..device import channels_last, resolve_device
from ..errors import InputError, config_error
from ..io import expand_sources
from ..models import FEATURE_LEVELS, ModelConfig, build_model, count_flops, count_params, estimate_train_seconds
from ..normalize import Normalization
from ..progress import ProgressEvent, ProgressFn, emit
from .config import DistillJob, TeacherJob
from .init import keep_best, start_from
from .labels import labels_ahead, teacher_labels
from .objectives import METHOD_TERMS, DistillObjective, StudentWithProjections, TeacherObjective
from .trainer import Trainer, is_main_process, rank


def train_teacher(
    config: TeacherJob | dict, *, progress: ProgressFn | None = None, cancel: threading.Event | None = None
) -> Path:
    """Train a teacher and save it; supervised with clean data, else self-supervised (Noise2Void)."""
    job = _validated(TeacherJob, config)
    output, state_path = _outputs(job.output, job.overwrite)
    _refuse_input_as_output(output, job.data.degraded, job.data.clean)
    _refuse_foreign(output)
    device, where = _setup_device(job.train.device)
    emit(progress, ProgressEvent("prepare", 0, _planned(job), message="reading data and normalisation statistics"))
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
        model = _build(job.model, channels, channels, job.spatial_dims)
    plan = _plan(job.data, degraded, clean, model, progress, _planned(job))
    _warn_if_slow(model, plan, job.data, job.train, device, progress)
    sampler = _sampler(
        job.data, plan, degraded if self_sup or degraded is not None else None, clean, norm, job.train.seed
    )
    objective = TeacherObjective(
        sampler, job.data.batch_size, device, self_sup, job.n2v_fraction, job.train.seed, rank()
    )
    mode = "self-supervised (Noise2Void)" if self_sup else "supervised (L1 to the clean images)"
    emit(progress, ProgressEvent("prepare", 0, _planned(job), message=f"training a teacher, {mode}, {where}"))
    trainer = Trainer(model, job.train, device, state_path, _fingerprint(job), keep_best(job.train.keep_best, job.init))
    resumed = trainer.try_resume()
    t0 = time.perf_counter()

    def validate() -> dict[str, float]:
        return evaluate(model, sampler.validation, device) | objective.validation_loss(model)

    done = trainer.run(objective, validate, progress, cancel)
    record = _record(job, trainer, done, resumed, time.perf_counter() - t0, device)
    record.update(mode=mode, patch=list(plan.sides), held_out=_held_out_record(plan), init=start)
    return _finish(trainer, done, output, model, "teacher", norm, record, None, progress)


def distill(
    config: DistillJob | dict, *, progress: ProgressFn | None = None, cancel: threading.Event | None = None
) -> Path:
    """Distil a student from a teacher (soft knowledge distillation, or a baseline) and save it."""
    job = _validated(DistillJob, config)
    output, state_path = _outputs(job.output, job.overwrite)
    teacher_path = getattr(job.teacher, "path", job.teacher)
    _refuse_input_as_output(output, job.data.degraded, job.data.clean, teacher_path)
    _refuse_foreign(output)
    device, where = _setup_device(job.train.device)
    teacher_ck = job.teacher if isinstance(job.teacher, Checkpoint) else load_checkpoint(job.teacher)
    emit(progress, ProgressEvent("prepare", 0, _planned(job), message="reading data and normalisation statistics"))
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
        student = _build(job.student, tcfg.in_channels, tcfg.out_channels, tcfg.spatial_dims)
    scfg = student.config
    shape = (scfg.spatial_dims, scfg.in_channels, scfg.out_channels)
    if shape != (tcfg.spatial_dims, tcfg.in_channels, tcfg.out_channels):
        raise InputError(
            f"the student ({scfg.spatial_dims}D, {scfg.in_channels} -> {scfg.out_channels} channels) does not "
            f"match the teacher ({tcfg.spatial_dims}D, {tcfg.in_channels} -> {tcfg.out_channels} channels); "
            "give the student the teacher's dimensionality and channels, or use a preset name"
        )
    plan = _plan(job.data, degraded, clean, student, progress, _planned(job), unlabelled)
    _check_levels(teacher, student, job.loss.levels, plan, device)
    module = StudentWithProjections(student, tcfg.feature_channels, job.loss.levels, job.loss.method)
    name = job.student if isinstance(job.student, str) else "a custom student"
    emit(progress, ProgressEvent("prepare", 0, _planned(job), message=f"distilling {name} with method "
                                 f"{job.loss.method} from the teacher {teacher_ck.path or ''}, {where}"))  # fmt: skip
    if unlabelled is not None and unlabelled[0].shape[1] != channels:
        raise InputError(f"data.unlabelled has {unlabelled[0].shape[1]} channel(s) but data.degraded/clean has "
                         f"{channels}; give images of the same kind")  # fmt: skip
    ahead = labels_ahead(job.loss, (degraded or []) + (unlabelled or []) or None)
    ahead = ahead and degraded is not None
    t_label = time.perf_counter()
    label = (lambda vols: teacher_labels(teacher_ck, vols, device, progress)) if ahead else (lambda vols: None)
    sampler = _sampler(job.data, plan, degraded, clean, norm, job.train.seed, labels=label(degraded))
    extra = None
    if unlabelled is not None:  # its patches join the same batches: the same patch shape, no validation
        extra = _sampler(job.data, plan, unlabelled, None, norm, job.train.seed + 1, 0.0, label(unlabelled))
    label_seconds = time.perf_counter() - t_label if ahead else 0.0
    objective = DistillObjective(teacher, job.loss, sampler, job.data.batch_size, device, rank(), extra,
                                 job.data.unlabelled_share)  # fmt: skip
    best = keep_best(job.train.keep_best, job.student_init)
    trainer = Trainer(module, job.train, device, state_path, _fingerprint(job, teacher_ck.hash), best)
    resumed = trainer.try_resume()
    t0 = time.perf_counter()
    done = trainer.run(objective, lambda: evaluate(student, sampler.validation, device, teacher), progress, cancel)
    record = _record(job, trainer, done, resumed, time.perf_counter() - t0, device)
    record.update(method=job.loss.method, loss=job.loss.model_dump(), teacher_path=str(teacher_path),
                  loss_weights=dict(objective.weights), teacher_labels="ahead" if ahead else "live",
                  label_seconds=round(label_seconds, 2), patch=list(plan.sides),
                  held_out=_held_out_record(plan), init=start)  # fmt: skip
    return _finish(trainer, done, output, student, "student", norm, record, teacher_ck, progress)


# --- helpers --------------------------------------------------------------------------------------------------


def _validated(cls: type[BaseModel], config: Any) -> Any:
    if isinstance(config, cls):
        return config
    try:
        return cls.model_validate(config)
    except ValidationError as exc:
        raise config_error(cls.__name__, exc) from exc


def _outputs(output: str, overwrite: bool) -> tuple[Path, Path]:
    """The checkpoint path and its resumable-state path; a finished output is kept unless ``overwrite``."""
    path = Path(output)
    state = path.with_name(path.name + ".state")
    if path.is_dir():
        raise InputError(f"output {path} is a folder; give a file path such as {path / 'model.pt'}")
    if path.exists() and not state.exists() and not overwrite:
        raise InputError(f"{path} already exists; choose another output or set overwrite to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # e.g. a part of the folder path is a file (checked before training, not after)
        raise InputError(
            f"cannot create the folder of the output {path} ({err.strerror}); choose another output"
        ) from err
    if not os.access(path.parent, os.W_OK):
        raise InputError(f"cannot write to {path.parent}: the folder is read-only; choose another output")
    return path, state  # a leftover state is reused only when its fingerprint matches (Trainer.try_resume)


def _refuse_foreign(output: Path) -> None:
    """An existing output may be replaced only if it is a napari-skd checkpoint (even with overwrite)."""
    if output.exists() and not written_by_us(output):
        raise InputError(
            f"the output {output} exists and is not a napari-skd checkpoint: napari-skd never replaces what it did "
            "not write, even with overwrite; choose another output path"
        )


def _refuse_input_as_output(output: Path, *sources: Any) -> None:
    """Inputs are never modified: the output may not be a data file or the teacher (even with overwrite)."""
    for spec in sources:
        if spec is None or not isinstance(spec, str | os.PathLike | list | tuple):
            continue
        try:
            paths = expand_sources(spec)
        except InputError:  # a missing input is reported where it is read
            continue
        for p in paths:
            if isinstance(p, str | os.PathLike) and Path(p).resolve() == output.resolve():
                raise InputError(
                    f"the output {output} is one of the job's inputs: inputs are never modified; "
                    "choose another output path"
                )


def _setup_device(name: str) -> tuple[torch.device, str]:
    """The training device and a sentence saying which; under torchrun, also joins the process group (gloo on
    CPUs, nccl on GPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and name != "cpu"
        dist.init_process_group("nccl" if use_cuda else "gloo")
        where = f"torch DDP over {world} processes ({'nccl, GPUs' if use_cuda else 'gloo, CPUs'})"
        if use_cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            return torch.device("cuda", local), where
        return torch.device("cpu"), where
    return resolve_device(name)


def _build(spec: str | ModelConfig, cin: int, cout: int, spatial_dims: int) -> nn.Module:
    if isinstance(spec, ModelConfig):
        return build_model(spec)
    return build_model(spec, in_channels=cin, out_channels=cout, spatial_dims=spatial_dims)


#: Above this many FLOPs per pixel, training on a CPU is timed and a warning gives the estimated time (the published
#: ``teacher`` has 4.7 M; ``teacher-tiny`` 0.19 M).
SLOW_FLOPS_PER_PIXEL = 1e6


def _warn_if_slow(
    model: nn.Module, plan: PatchPlan, data, train, device: torch.device, progress: ProgressFn | None
) -> None:
    """A large network on a CPU: say how long training will take, and what to do instead."""
    if device.type != "cpu" or count_flops(model, 64) / 64**model.config.spatial_dims < SLOW_FLOPS_PER_PIXEL:
        return
    size = f"this {count_params(model) / 1e6:.1f} M-parameter network"
    dims = model.config.spatial_dims
    side = max(1, round(math.prod(plan.sides) ** (1 / dims)))  # a square (cube) of the patch's size
    if train.step_bound:
        seconds = estimate_train_seconds(model, side, data.batch_size, train.steps)
        took = f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min" if seconds >= 60 else "1 min"
        what = f"training {size} on the CPU takes about {took} for {train.steps} steps"
        what += " (estimated from one timed forward pass)"
    else:
        per_step = estimate_train_seconds(model, side, data.batch_size, 1)
        what = f"{size} trains at about {per_step:.1f} s per step on the CPU"
        what += f", {train.max_time / per_step:.0f} steps in the time budget"
    message = f"warning: {what}; use a GPU, or a smaller preset such as teacher-tiny on a CPU"
    logging.getLogger("napari_skd").warning(message)
    emit(progress, ProgressEvent("prepare", 0, train.steps if train.step_bound else 0, message=message))


def _planned(job) -> int:
    """Steps shown before training starts: the step budget, or 0 for a time budget (the total is not known yet)."""
    return job.train.steps if job.train.step_bound else 0


def _plan(
    data, degraded, clean, model: nn.Module, progress: ProgressFn | None, planned: int, unlabelled=None
) -> PatchPlan:
    """The training patch and validation regions for the (aligned) ``degraded`` and ``clean`` images (a patch that
    fits ``unlabelled`` too) and ``model``; a ``patch_size`` left unset fits small images. Every choice made for the
    data is reported (as progress messages, or logged without them)."""
    check_pairs(degraded, clean)
    plan = plan_patches(
        [v.shape for v in degraded or clean], data.patch_size, spatial_dims=model.config.spatial_dims,
        multiple=model.multiple, val_fraction=data.val_fraction, fit="patch_size" not in data.model_fields_set,
        unvalidated=[v.shape for v in unlabelled or []],
    )  # fmt: skip
    for note in plan.notes:
        if progress is None:
            logging.getLogger("napari_skd").info(note)
        emit(progress, ProgressEvent("prepare", 0, planned, message=note))
    return plan


def _held_out_record(plan: PatchPlan) -> list:
    """Each training image's validation region for the checkpoint record: ``[axis, count]`` or None."""
    return [None if h is None else [h.axis, h.count] for h in plan.held_out]


def _sampler(
    data,
    plan: PatchPlan,
    degraded,
    clean,
    norm: Normalization,
    seed: int,
    val_fraction: float | None = None,
    labels: list | None = None,
) -> PatchSampler:
    """A sampler drawing ``plan``'s patches."""
    return PatchSampler(
        degraded, clean, norm, spatial_dims=plan.spatial_dims, patch_size=plan.sides, seed=seed,
        degradation=data.degradation,
        val_fraction=data.val_fraction if val_fraction is None else val_fraction, val_patches=data.val_patches,
        augment=data.augment, reject_background=data.reject_background, labels=labels,
    )  # fmt: skip


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


def evaluate(model: nn.Module, val: Batch | None, device, teacher: nn.Module | None = None) -> dict[str, float]:
    """Validation metrics in normalised units (data range 1): PSNR/SSIM against clean, and against the teacher."""
    if val is None:
        return {}

    model.eval()
    with torch.no_grad():
        pred = model(val.input.to(device)).float().cpu().numpy()
        refs = {"": val.target.numpy() if val.target is not None else None}
        if teacher is not None:
            refs["_teacher"] = teacher(val.input.to(device)).float().cpu().numpy()
    metrics = {}
    for suffix, ref in refs.items():
        if ref is None:
            continue
        metrics["psnr" + suffix] = float(
            np.mean([peak_signal_noise_ratio(r, p, data_range=1.0) for r, p in zip(ref, pred, strict=True)])
        )
        metrics["ssim" + suffix] = float(
            np.mean([structural_similarity(r[c], p[c], data_range=1.0) for r, p in zip(ref, pred, strict=True)
                     for c in range(r.shape[0])])
        )  # fmt: skip
    return metrics


def _fingerprint(job: BaseModel, extra: str = "") -> str:
    """Identity of a job for resuming: settings that change the result, and the data's shapes."""
    exclude = {"overwrite": True, "train": {"val_every", "checkpoint_every", "device"}}
    text = job.model_dump_json(exclude=exclude) + extra
    for source in (job.data.degraded, job.data.clean):
        if source is not None and not isinstance(source, str | list | tuple):
            text += f"{getattr(source, 'shape', '')}{getattr(source, 'dtype', '')}"
    return hashlib.sha256(text.encode()).hexdigest()


def _record(job: BaseModel, trainer: Trainer, done: bool, resumed: bool, seconds: float, device) -> dict:
    last_val = next((h for h in reversed(trainer.history) if any(k.startswith("val_") for k in h)), {})
    validations = [
        {
            "step": int(h["step"]),
            "seconds": h.get("seconds"),
            **{k[4:]: v for k, v in h.items() if k.startswith("val_")},
            "terms": {k[5:]: v for k, v in h.items() if k.startswith("diag_")},
        }
        for h in trainer.history
        if "seconds" in h
    ]
    return {
        "data": job.data.model_dump(mode="json"),
        "train": job.train.model_dump(mode="json"),
        "steps": trainer.step,
        "completed": done,
        "resumed": resumed,
        "seed": job.train.seed,
        "metrics": {k[4:]: v for k, v in last_val.items() if k.startswith("val_")},
        "final_losses": {
            k: v
            for k, v in (trainer.history[-1] if trainer.history else {}).items()
            if k not in ("step", "seconds") and not k.startswith("diag_")
        },
        "seconds_this_run": round(seconds, 2),
        "seconds": round(trainer.seconds, 2),
        "max_time": job.train.max_time,
        "kept": trainer.best_record(),
        "validations": validations,
        "device": str(device),
        "world_size": dist.get_world_size() if dist.is_initialized() else 1,
    }


def _finish(trainer, done, output, model, role, norm, record, teacher, progress) -> Path:
    if is_main_process():
        trainer.use_final()  # the best validation (keep_best), the moving average (train.ema) or the last weights
        model.to(memory_format=torch.contiguous_format)  # trained channels-last; saved in the default layout
        save_checkpoint(output, model, role=role, norm=norm, record=record, teacher=teacher)
        if done:
            trainer.discard_state()
    if dist.is_initialized():
        dist.barrier()
    phase, msg = ("done", f"saved {output}") if done else ("stopped", f"stopped at step {trainer.step}; saved {output}")
    emit(progress, ProgressEvent(phase, trainer.step, trainer.total(), message=msg))
    return output
