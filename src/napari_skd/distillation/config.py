"""Validated configuration of teacher training and distillation (pydantic v2, versioned, YAML-ready).

Data sources may be paths, globs or folders (serialisable) or, from Python and the GUI, in-memory arrays (kept out of
serialisation and shown as ``<array>``).
"""

from __future__ import annotations

import numbers
import re
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from ..data.degrade import DegradationConfig
from ..errors import config_error
from ..models import FEATURE_LEVELS, PRESETS, ModelConfig

#: Feature levels distilled by default (docs/method.md).
DEFAULT_LEVELS: tuple[str, ...] = FEATURE_LEVELS

Method = Literal["skd", "scratch", "output-kd", "feature-kd", "skd-no-mca", "skd-no-cl", "skd-rec"]
METHODS: tuple[str, ...] = get_args(Method)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


class _JobModel(_Strict):
    """A whole job: built from keywords (as the GUI does), a wrong setting raises :class:`ConfigError`."""

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise config_error(type(self).__name__, exc) from exc


class DataConfig(_Strict):
    """Where patches come from and how they are drawn."""

    degraded: Any = Field(None, description="Degraded (noisy) images: path, glob, folder, list of them, or arrays.")
    clean: Any = Field(None, description="Clean images aligned with 'degraded', or alone with a 'degradation'.")
    unlabelled: Any = Field(
        None, description="Extra noisy images without clean counterparts, labelled by the teacher (distillation)."
    )
    unlabelled_share: float = Field(0.5, gt=0, lt=1, description="Share of each batch drawn from 'unlabelled'.")
    axes: str | None = Field(
        None, description="Axes of every image, e.g. YX, ZYX, CYX, TZYX (OME letters; S, for samples, is read as T)."
    )
    degradation: DegradationConfig | None = Field(None, description="Synthetic degradation of clean images.")
    patch_size: int | tuple[int, ...] = Field(
        64,
        ge=8,
        le=1024,
        description="Patch side in pixels, or one side per spatial axis (ZYX order). One side is a square (3D: a cube "
        "whose depth shrinks to fit thin stacks); left unset, it also shrinks to fit small images.",
    )
    batch_size: int = Field(8, ge=1, le=1024)
    val_fraction: float = Field(
        0.1,
        ge=0,
        lt=0.9,
        description="Last fraction of Y rows held out for validation (of Z slices or samples in images too small).",
    )
    val_patches: int = Field(8, ge=1, description="Validation patches evaluated at each validation.")
    augment: bool = Field(True, description="Random flips and 90-degree rotations.")
    reject_background: float = Field(0.0, ge=0, description="Redraw patches whose 99th percentile is below this.")
    pmin: float = Field(1.0, ge=0, le=100, description="Lower percentile of the dataset-wide normalisation.")
    pmax: float = Field(99.8, ge=0, le=100, description="Upper percentile of the dataset-wide normalisation.")

    @field_serializer("degraded", "clean", "unlabelled")
    def _ser_sources(self, v: Any) -> Any:
        if v is None or isinstance(v, str):
            return v
        if isinstance(v, list | tuple) and all(isinstance(s, str) for s in v):
            return list(v)
        return "<array>"

    @field_validator("patch_size", mode="wrap")
    @classmethod
    def _patch_size(cls, v: Any, handler: Any) -> Any:
        """One side (8 to 1024) or one per spatial axis; the bounds apply to each side."""
        sides = list(v) if isinstance(v, list | tuple) or getattr(v, "ndim", 0) == 1 else [v]
        whole = [s for s in sides if isinstance(s, numbers.Integral) or (isinstance(s, float) and s.is_integer())]
        if not 1 <= len(sides) <= 3 or len(whole) != len(sides) or any(isinstance(s, bool) for s in sides):
            raise ValueError(
                f"expected a whole number of pixels, or one per spatial axis (ZYX order), e.g. 64 or [16, 64, 64]; "
                f"got {v!r}"
            )
        sides = [handler(int(s)) for s in sides]
        return sides[0] if len(sides) == 1 else tuple(sides)

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.degraded is None and self.clean is None:
            raise ValueError("give 'degraded' images, 'clean' images, or both")
        if self.degraded is None and self.degradation is None:
            raise ValueError("clean images alone need a 'degradation' (e.g. {kind: gaussian, sigma: 0.1})")
        if self.pmax <= self.pmin:
            raise ValueError(f"pmax ({self.pmax}) must be above pmin ({self.pmin})")
        return self


class TrainConfig(_Strict):
    """Optimisation, schedule, checkpoints and devices."""

    steps: int = Field(1000, ge=1, description="Optimiser steps (an upper bound when max_time is set).")
    max_time: float | str | None = Field(
        None,
        gt=0,
        description="Wall-time budget: seconds, or text such as 90s, 10m, 1h30m. The learning-rate "
        "schedule runs over this budget; training ends when it is spent (or at steps, when that is given too).",
    )
    lr: float = Field(3e-4, gt=0, description="Peak learning rate of AdamW.")
    weight_decay: float = Field(1e-4, ge=0)
    warmup_steps: int = Field(50, ge=0, description="Linear warm-up before the cosine decay.")
    clip_grad: float = Field(1.0, ge=0, description="Gradient norm clipping (0 disables).")
    seed: int = Field(0, description="Seeds weights, patches, noise and masks.")
    val_every: int = Field(100, ge=1, description="Validate every N steps (and at the end).")
    checkpoint_every: int = Field(200, ge=1, description="Save a resumable state every N steps.")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps.")
    amp: bool = Field(True, description="Mixed precision on GPUs (bf16/fp16); ignored on the CPU.")
    ema: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Decay of an exponential moving average of the weights, validated and saved "
        "instead of the last weights (0 = off; e.g. 0.99).",
    )

    keep_best: bool | None = Field(
        None,
        description="Validate before the first step and keep the weights of the best validation (PSNR on the "
        "held-out rows; Noise2Void's masked loss without clean data). None: on when training starts from a "
        "checkpoint (init, student_init), so fine-tuning never ends below where it started.",
    )

    @field_validator("max_time", mode="before")
    @classmethod
    def _max_time(cls, v: Any) -> Any:
        return parse_duration(v) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _budget(self) -> TrainConfig:
        if self.max_time is not None and "steps" not in self.model_fields_set:
            self.steps = UNBOUNDED_STEPS  # the time budget alone ends training
        return self

    @property
    def step_bound(self) -> bool:
        """True when training ends at ``steps`` (not only at ``max_time``)."""
        return self.steps < UNBOUNDED_STEPS


#: ``steps`` of a job that has only a time budget.
UNBOUNDED_STEPS = 10**9


def parse_duration(text: str) -> float:
    """Seconds in ``"90"``, ``"90s"``, ``"10m"``, ``"1h30m"`` or ``"2h"``."""
    t = text.strip().lower().replace(" ", "")
    match = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?:in)?)?(?:(\d+(?:\.\d+)?)s?)?", t)
    if not t or match is None or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration; write seconds (600) or text such as 90s, 10m, 1h30m")
    h, m, sec = (float(g) if g else 0.0 for g in match.groups())
    return h * 3600 + m * 60 + sec


def _check_model(v: Any) -> Any:
    if isinstance(v, str) and v not in PRESETS:
        raise ValueError(f"unknown model preset {v!r}; choose one of: {', '.join(PRESETS)}")
    return v


Architecture = Annotated[str | ModelConfig, AfterValidator(_check_model)]  # a preset name or a ModelConfig


class TeacherJob(_JobModel):
    """Train a teacher: supervised (L1 to clean) when clean data exists, else self-supervised (Noise2Void)."""

    version: int = 1
    data: DataConfig
    model: Architecture = Field("teacher", description="Preset name or architecture.")
    spatial_dims: Literal[2, 3] = 2
    mode: Literal["auto", "supervised", "self-supervised"] = "auto"
    init: str | None = Field(
        None,
        description="Start from this checkpoint (a path, or a shipped model such as pretrained:general-2d) and "
        "fine-tune it; its architecture replaces 'model'.",
    )
    n2v_fraction: float = Field(0.02, gt=0, lt=0.5, description="Fraction of pixels masked per patch (Noise2Void).")
    train: TrainConfig = TrainConfig()
    output: str = Field(..., description="Path of the teacher checkpoint to write.")
    overwrite: bool = False


class LossConfig(_Strict):
    """Distillation objective. ``L = L_REC + alpha2 L_GK + alpha3 L_CL`` for ``skd``; baselines drop terms."""

    method: Method = "skd"
    levels: tuple[str, ...] = Field(DEFAULT_LEVELS, description="Feature levels distilled (names of FEATURE_LEVELS).")
    beta: float = Field(1.0, ge=0, description="Weight of L1(student, teacher) inside L_REC when clean data exists.")
    balance: bool = Field(True, description="Read alpha2 and alpha3 as gradient-norm ratios to L_REC at the start.")
    alpha1: float = Field(1.0, ge=0, description="Weight of the MCA terms inside L_GK.")
    alpha2: float = Field(0.1, ge=0, description="Weight of L_GK (a gradient ratio to L_REC when balance is on).")
    alpha3: float = Field(
        0.0, ge=0, description="Weight of L_CL (a gradient ratio to L_REC when balance is on); 0 switches it off."
    )
    sigma: float | None = Field(None, gt=0, description="Gaussian kernel width; None = set from the data (median).")
    mca_lambda: float = Field(0.1, gt=0, description="MCA temperature on cosine-similarity logits.")
    max_positions: int = Field(256, ge=4, description="Cap on positions of the spatial MCA map (N x N).")
    cl_levels: int = Field(2, ge=1, le=3, description="Teacher encoder levels used by the contrastive distance.")
    cl_weights: tuple[float, ...] = Field((0.25, 0.5, 1.0), description="Weights of those levels.")
    cl_warmup: int = Field(100, ge=0, description="Steps before the contrastive loss switches on.")
    feature_kd_weight: float = Field(1.0, ge=0, description="Weight of the FitNet L2 term (feature-kd).")
    teacher_labels: Literal["auto", "live"] = Field(
        "auto",
        description="auto: label fixed training images once before training when the method reads only the "
        "teacher's outputs; live: run the teacher on every batch.",
    )

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [lv for lv in v if lv not in FEATURE_LEVELS]
        if bad or not v:
            raise ValueError(f"unknown feature levels {bad or '(none)'}; choose from {', '.join(FEATURE_LEVELS)}")
        return v

    @model_validator(mode="after")
    def _check(self) -> LossConfig:
        if len(self.cl_weights) < self.cl_levels:
            raise ValueError(f"cl_weights needs {self.cl_levels} values, got {len(self.cl_weights)}")
        return self


class DistillJob(_JobModel):
    """Distil a student from a teacher checkpoint."""

    version: int = 1
    data: DataConfig
    teacher: Any = Field(
        ...,
        description="Teacher checkpoint path, a shipped model such as pretrained:general-2d, or a loaded Checkpoint "
        "from Python.",
    )
    student: Architecture = Field("student-s", description="Student preset name or architecture.")
    student_init: str | None = Field(
        None,
        description="Start the student from this checkpoint (a path, or pretrained:general-2d-student); its "
        "architecture replaces 'student'.",
    )
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    output: str = Field(..., description="Path of the student checkpoint to write.")
    overwrite: bool = False

    @field_serializer("teacher")
    def _ser_teacher(self, v: Any) -> Any:
        return v if isinstance(v, str) else str(getattr(v, "path", "<checkpoint>"))
