"""Human-readable summaries of checkpoints, shared by the napari widgets and the CLI."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from .checkpoint import Checkpoint
from .models import count_flops, count_params


def describe_checkpoint(ck: Checkpoint, size: int = 256) -> dict[str, str]:
    """Role, architecture, size, FLOPs, normalisation and training record of a loaded checkpoint."""
    cfg = ck.config
    arch = (
        f"{cfg.arch} {cfg.spatial_dims}D, dim {cfg.dim}, blocks {list(cfg.num_blocks)}, "
        f"{cfg.in_channels}->{cfg.out_channels} channels"
    )
    rec = ck.record
    training = ", ".join(
        part
        for part in (
            f"{rec['steps']} steps" if "steps" in rec else "",
            f"method {rec['method']}" if "method" in rec else "",
            rec.get("mode", ""),
            rec.get("source", ""),
            "stopped early" if rec.get("completed") is False else "",
        )
        if part
    )
    metrics = ", ".join(f"{k} {v:.3g}" for k, v in (rec.get("metrics") or {}).items())
    norm = (
        f"percentiles {ck.norm.pmin}/{ck.norm.pmax}: {ck.norm.bounds_text()}"
        if ck.norm
        else "identity (intensities used as they are)"
    )
    if ck.per_input and ck.norm is not None:
        norm = f"each input's own {ck.norm.pmin:g}/{ck.norm.pmax:g} percentiles (a generalist)"
    return {
        "role": ck.role,
        "architecture": arch,
        "parameters": f"{count_params(ck.model):,}",
        "FLOPs": flops_text(count_flops(ck.model, size), size, cfg.spatial_dims),
        "normalisation": norm,
        "training": training or "unknown",
        "metrics": metrics or "none recorded",
        "teacher": (ck.teacher_hash or "")[:12] or "-",
    }


def flops_text(flops: float, size: int, spatial_dims: int) -> str:
    """``2.72 GFLOP per 256x256 input`` (MFLOP below one GFLOP, TFLOP from one TFLOP)."""
    unit, scale = ("TFLOP", 1e12) if flops >= 1e12 else ("GFLOP", 1e9) if flops >= 1e9 else ("MFLOP", 1e6)
    return f"{flops / scale:.3g} {unit} per {'x'.join([str(size)] * spatial_dims)} input"


#: What each distillation method trains the student with (docs/method.md has the formulas).
METHOD_WORDS = {
    "skd": "soft knowledge distillation: outputs, Gaussian-kernel features and cross-net attention",
    "scratch": "the student alone, no teacher",
    "output-kd": "distillation of the teacher's outputs only",
    "feature-kd": "FitNet feature distillation",
    "skd-no-mca": "SKD without cross-net attention (ablation)",
    "skd-no-cl": "SKD without the contrastive term (ablation)",
    "skd-rec": "SKD's reconstruction term only (ablation)",
}


def training_record(ck: Checkpoint) -> dict[str, str]:
    """The checkpoint's training record in words, label -> text: only what the record holds, in reading order."""
    rec, out = ck.record, {}
    if rec.get("source"):
        imported = f", imported from {rec['imported_from']}" if rec.get("imported_from") else ""
        out["source"] = f"{rec['source']}{imported}"
    if rec.get("created"):
        out["created"] = _when(str(rec["created"]))
    if rec.get("versions"):
        out["software"] = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in dict(rec["versions"]).items())
    if rec.get("method"):
        out["method"] = f"{rec['method']} ({METHOD_WORDS.get(rec['method'], 'as recorded')})"
    elif rec.get("mode"):
        out["method"] = f"teacher, {rec['mode']}"
    if rec.get("pretrained"):
        out["pretrained"] = _pretrained_text(rec)
    if rec.get("init"):
        out["started from"] = str(rec["init"])
    if ck.teacher_hash or rec.get("teacher_path"):
        where = rec.get("teacher_path") or "file not recorded"
        out["teacher"] = f"{where} (hash {(ck.teacher_hash or '?')[:12]})"
    if "data" in rec:
        out["data"] = _data_text(rec["data"])
    if "steps" in rec:
        out["steps"] = _steps_text(rec)
    if "seed" in rec:
        out["seed"] = str(rec["seed"])
    metrics = {k: v for k, v in (rec.get("metrics") or {}).items() if isinstance(v, int | float)}
    if metrics:
        last = next((v.get("step") for v in reversed(rec.get("validations") or []) if isinstance(v, dict)), None)
        at = f" at step {last}" if last is not None else ""
        out["validation"] = f"{_metrics_text(metrics)} (held-out data{at}, normalised units)"
    losses = {k: v for k, v in (rec.get("final_losses") or {}).items() if isinstance(v, int | float)}
    if losses:
        out["last losses"] = ", ".join(f"{k} {v:.4g}" for k, v in losses.items())
    return out


def _pretrained_text(rec: dict[str, Any]) -> str:
    """``corpus 15526a817cce (6000 dead-leaves images, 14 photographs); about 18 CPU-hours; still improving``."""
    corpus = rec.get("corpus") or {}
    parts = [f"corpus {str(rec.get('corpus_hash', '?'))[:12]} ({corpus.get('synthetic', {}).get('count', '?')} "
             f"dead-leaves images, {len(corpus.get('natural', []))} photographs)"]  # fmt: skip
    if rec.get("cpu_equivalent"):
        parts.append(f"about {rec['cpu_equivalent']['cpu_hours']:.0f} CPU-hours of training (2-core CPU equivalent)")
    plateau = rec.get("plateau") or {}
    if plateau.get("last_fifth_gain_db") is not None:
        verdict = "at a plateau" if plateau.get("reached") else "still improving"
        parts.append(f"{verdict} (+{plateau['last_fifth_gain_db']:.2f} dB over the last fifth)")
    return "; ".join(parts)


def _when(iso: str) -> str:
    """``2026-11-26 23:13 UTC`` from an ISO time (the text itself when it does not parse)."""
    try:
        t = _dt.datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return t.strftime("%Y-%m-%d %H:%M") + (" UTC" if t.utcoffset() == _dt.timedelta(0) else "")


def _sources(value: Any) -> str:
    if isinstance(value, list | tuple):
        shown = ", ".join(map(str, value[:3]))
        return f"{len(value)} sources ({shown}{', ...' if len(value) > 3 else ''})"
    return str(value)


#: The settings each degradation uses (a record stores them all; only these are shown).
DEGRADATION_PARAMETERS = {
    "gaussian": ("sigma",),
    "poisson_gaussian": ("peak", "sigma"),
    "rician": ("sigma",),
    "blur_noise": ("blur_sigma", "sigma"),
}


def _data_text(data: Any) -> str:
    """``clean sample_data/nuclei2d.tif, axes YX, degraded with poisson_gaussian (peak 20, sigma 0.05), ...``."""
    if not isinstance(data, dict):
        return str(data)
    parts = [f"{k} {_sources(data[k])}" for k in ("degraded", "clean", "unlabelled") if data.get(k) is not None]
    if data.get("axes"):
        parts.append(f"axes {data['axes']}")
    deg = data.get("degradation")
    if isinstance(deg, dict) and deg.get("kind"):
        used = DEGRADATION_PARAMETERS.get(deg["kind"], ())
        params = ", ".join(f"{k} {deg[k]}" for k in used if isinstance(deg.get(k), int | float))
        parts.append(f"degraded with {deg['kind']}" + (f" ({params})" if params else ""))
    if data.get("patch_size"):
        parts.append(f"patches {data['patch_size']}, batch {data.get('batch_size', '?')}")
    if data.get("val_fraction") is not None:
        parts.append(f"last {float(data['val_fraction']):.0%} of rows held out for validation")
    return ", ".join(parts) or "not recorded"


def _steps_text(rec: dict[str, Any]) -> str:
    """``200 (completed) in 1 min 9 s on cpu`` from a training record."""
    text = str(rec["steps"])
    if rec.get("completed") is True:
        text += " (completed)"
    elif rec.get("completed") is False:
        text += " (stopped before the end; the same job run again resumes it)"
    if isinstance(rec.get("seconds"), int | float) and rec["seconds"] > 0:
        text += f" in {_duration(rec['seconds'])}"
    if rec.get("device"):
        world = rec.get("world_size") or 1
        text += f" on {rec['device']}" + (f" x {world} processes" if world > 1 else "")
    if rec.get("max_time"):
        text += f", time budget {rec['max_time']}"
    if rec.get("resumed"):
        text += ", resumed from a saved state"
    return text


def _duration(seconds: float) -> str:
    minutes, sec = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {sec} s" if minutes else f"{seconds:.1f} s"


def _metrics_text(metrics: dict[str, float]) -> str:
    """``PSNR 30.12 dB, SSIM 0.8123 vs clean; PSNR 35.10 dB vs teacher; Noise2Void masked-pixel loss 0.0123 ...``."""
    parts = []
    for suffix, against in (("", "vs clean"), ("_teacher", "vs teacher")):
        pair = []
        if "psnr" + suffix in metrics:
            pair.append(f"PSNR {metrics['psnr' + suffix]:.2f} dB")
        if "ssim" + suffix in metrics:
            pair.append(f"SSIM {metrics['ssim' + suffix]:.4f}")
        if pair:
            parts.append(f"{', '.join(pair)} {against}")
    for k, v in metrics.items():
        if k == "n2v_mse":
            parts.append(f"Noise2Void masked-pixel loss {v:.4g} (lower is better)")
        elif k not in ("psnr", "ssim", "psnr_teacher", "ssim_teacher"):
            parts.append(f"{k} {v:.4g}")
    return "; ".join(parts)
