"""One-file model checkpoints that are safe to open, and import of official Restormer weights.

A checkpoint is a ``torch.save`` zip holding only tensors, strings and numbers:

- ``format`` ("napari-skd") and ``format_version``;
- ``role`` ("teacher" or "student") and, for a student, ``teacher_hash``;
- ``config`` (the architecture, JSON), ``state_dict`` (the weights), ``norm`` (normalisation, JSON or None);
- ``record`` (JSON: data, steps, seed, metrics, package versions).

Loading uses ``torch.load(weights_only=True)``, which never runs pickled code.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import pickle
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import ValidationError
from torch import nn

from .errors import CheckpointError, write_error
from .models import ModelConfig, Restormer, UNet, build_model
from .normalize import Normalization

FORMAT = "napari-skd"
FORMAT_VERSION = 1
Role = Literal["teacher", "student"]


@dataclass
class Checkpoint:
    """A loaded checkpoint: the ready model (eval mode, on the CPU) and everything stored with it."""

    model: Restormer | UNet
    config: ModelConfig
    role: Role
    norm: Normalization | None = None
    record: dict[str, Any] = field(default_factory=dict)
    teacher_hash: str | None = None
    format_version: int = FORMAT_VERSION
    path: Path | None = None

    @property
    def hash(self) -> str:
        return model_hash(self.model)


def model_hash(model: nn.Module) -> str:
    """SHA-256 of a model's architecture and weights (stable across save/load)."""
    h = hashlib.sha256()
    cfg = getattr(model, "config", None)
    if cfg is not None:
        h.update(cfg.model_dump_json().encode())
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().clone(memory_format=torch.contiguous_format)  # the same bytes for any layout
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    import numpy

    from . import __version__

    return {
        "napari_skd": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    role: Role = "teacher",
    norm: Normalization | dict | None = None,
    record: dict[str, Any] | None = None,
    teacher: nn.Module | Checkpoint | None = None,
) -> Path:
    """Write ``model`` and its metadata to ``path`` atomically (a crash never leaves half a file).

    ``norm=None`` means the model sees intensities unchanged. ``teacher`` (for a student) stores the teacher's hash.
    """
    if role not in ("teacher", "student"):
        raise CheckpointError(f"role must be 'teacher' or 'student', got {role!r}")
    cfg = getattr(model, "config", None)
    if not isinstance(cfg, ModelConfig):
        raise CheckpointError("only napari-skd models (built with build_model) can be saved as checkpoints")
    if isinstance(norm, dict):
        norm = Normalization.model_validate(norm)
    teacher_hash = None
    if teacher is not None:
        teacher_hash = teacher.hash if isinstance(teacher, Checkpoint) else model_hash(teacher)
    rec = {"created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "versions": package_versions()}
    rec.update(record or {})
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "role": role,
        "teacher_hash": teacher_hash,
        "config": cfg.model_dump_json(),
        "norm": norm.model_dump_json() if norm is not None else None,
        "record": json.dumps(rec, default=str),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # an ordinary file (mkstemp makes it private)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except OSError as err:  # e.g. a full disk: the temporary file goes, an earlier file at ``path`` stays whole
        if (message := write_error(path, err, "save again")) is None:
            raise
        raise message from err
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _safe_load(path: str | os.PathLike) -> Any:
    """``torch.load`` restricted to tensors and plain data, with user-facing errors."""
    if not isinstance(path, (str, os.PathLike)):
        raise CheckpointError(f"expected a checkpoint file path (or a loaded Checkpoint), got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; expected a checkpoint file (.pt or .pth)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" not in str(exc).lower():  # not an object reference: plain damage
            raise CheckpointError(
                f"could not read {path}: the file is damaged, truncated or not a PyTorch checkpoint"
            ) from exc
        raise CheckpointError(
            f"refused to load {path}: it contains Python objects other than tensors and plain data, which could "
            "run code on this computer. Only load model files from sources you trust; a trusted file can be "
            "re-saved with napari-skd to make it safe."
        ) from exc
    except Exception as exc:  # torch raises many types for damaged files  # noqa: BLE001
        raise CheckpointError(
            f"could not read {path}: the file is damaged, truncated or not a PyTorch checkpoint ({exc})"
        ) from exc


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Load a napari-skd checkpoint, or import an official Restormer ``.pth`` as a teacher."""
    obj = _safe_load(path)
    if isinstance(obj, dict) and obj.get("format") != FORMAT and _looks_official(obj):
        return _import_state(obj, path)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a napari-skd checkpoint nor an official Restormer file; "
            "expected a file written by napari-skd (train-teacher, distill) or a Restormer .pth"
        )
    version = obj.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path} has an invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written with checkpoint format {version}, newer than this napari-skd reads "
            f"({FORMAT_VERSION}); upgrade napari-skd to open it"
        )
    role = obj.get("role")
    if role not in ("teacher", "student"):
        raise CheckpointError(f"{path} has an invalid role {role!r}; expected 'teacher' or 'student'")
    try:
        config = ModelConfig.model_validate_json(obj["config"])
        norm = Normalization.model_validate_json(obj["norm"]) if obj.get("norm") else None
        record = json.loads(obj.get("record") or "{}")
    except (ValidationError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} has a damaged architecture or metadata section: {exc}") from exc
    model = _model_with_weights(config, obj.get("state_dict"), path)
    return Checkpoint(
        model=model,
        config=config,
        role=role,
        norm=norm,
        record=record,
        teacher_hash=obj.get("teacher_hash"),
        format_version=version,
        path=Path(path),
    )


def _model_with_weights(config: ModelConfig, state: Any, path: str | os.PathLike) -> Restormer | UNet:
    """Build the model and load ``state`` after checking every key and shape (no allocation from the file's say)."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no valid weights")
    # Nothing is built from the file's say before these cheap checks: every block of the architecture has weights
    # (so a tiny file cannot ask for millions of blocks), and every tensor's values are stored in the file (a
    # broadcast view, stride 0, could declare terabytes backed by one number).
    blocks = sum(config.num_blocks) + config.num_refinement_blocks
    if blocks > len(state):
        raise CheckpointError(
            f"the architecture in {path} has {blocks} blocks but the file holds only {len(state)} weight tensors; "
            "the file is damaged or was not written by napari-skd"
        )
    for name, t in state.items():
        if t.numel() * t.element_size() > t.untyped_storage().nbytes():
            raise CheckpointError(
                f"the weight {name} in {path} declares shape {tuple(t.shape)} but the file stores only "
                f"{t.untyped_storage().nbytes()} bytes for it; the file is damaged or crafted, and was refused"
            )
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build_model(config).state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{label}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        )
        raise CheckpointError(f"the weights in {path} do not fit its architecture ({detail})")
    model = build_model(config)
    model.load_state_dict(state, strict=True)
    return model.eval()


# --- official Restormer weights -------------------------------------------------------------------------------


def _looks_official(obj: dict) -> bool:
    state = obj.get("params", obj.get("state_dict", obj))
    return isinstance(state, dict) and "patch_embed.proj.weight" in state


def _count(state: dict, prefix: str) -> int:
    return len({k.split(".")[1] for k in state if k.startswith(prefix + ".")})


def official_config(state: dict[str, torch.Tensor], **overrides: Any) -> ModelConfig:
    """Infer the ``ModelConfig`` of an official Restormer state dict."""
    if "skip_conv.weight" in state:
        raise CheckpointError(
            "this is a dual-pixel defocus-deblurring Restormer (it has skip_conv); napari-skd supports the "
            "single-image variants (denoising, deraining, motion deblurring)"
        )
    dim = state["patch_embed.proj.weight"].shape[0]
    hidden = state["encoder_level1.0.ffn.project_out.weight"].shape[1]
    expansion = 2.66 if int(dim * 2.66) == hidden else (hidden + 0.5) / dim
    kw: dict[str, Any] = dict(
        in_channels=state["patch_embed.proj.weight"].shape[1],
        out_channels=state["output.weight"].shape[0],
        dim=dim,
        num_blocks=tuple(_count(state, n) for n in ("encoder_level1", "encoder_level2", "encoder_level3", "latent")),
        heads=tuple(
            state[f"{n}.0.attn.temperature"].shape[0]
            for n in ("encoder_level1", "encoder_level2", "encoder_level3", "latent")
        ),
        num_refinement_blocks=_count(state, "refinement"),
        ffn_expansion_factor=expansion,
        bias="encoder_level1.0.attn.qkv.bias" in state,
        layernorm_type="WithBias" if "encoder_level1.0.norm1.body.bias" in state else "BiasFree",
        spatial_dims=2,
    )
    kw.update(overrides)
    try:
        return ModelConfig(**kw)
    except ValidationError as exc:
        raise CheckpointError(f"the official Restormer weights give an invalid architecture: {exc}") from exc


def _import_state(obj: dict, path: str | os.PathLike, **overrides: Any) -> Checkpoint:
    state = obj.get("params", obj.get("state_dict", obj))
    try:
        config = official_config(state, **overrides)
    except KeyError as exc:
        raise CheckpointError(f"{path} looks like a Restormer file but lacks the weight {exc}") from exc
    model = _model_with_weights(config, state, path)
    record = {"imported_from": str(path), "source": "official Restormer weights (swz30/Restormer)"}
    return Checkpoint(model=model, config=config, role="teacher", record=record, path=Path(path))


def import_restormer(path: str | os.PathLike, **build_overrides: Any) -> Checkpoint:
    """Import an official Restormer ``.pth`` (``{'params': state_dict}``) as a teacher checkpoint.

    The architecture is read from the weights; ``build_overrides`` may fix fields such as ``layernorm_type``.
    """
    obj = _safe_load(path)
    if not isinstance(obj, dict) or not _looks_official(obj):
        raise CheckpointError(
            f"{path} is not an official Restormer file: expected {{'params': state_dict}} with the Restormer's "
            "parameter names (patch_embed.proj.weight, ...)"
        )
    return _import_state(obj, path, **build_overrides)
