"""Human-readable summaries of checkpoints, shared by the napari widgets and the CLI."""

from __future__ import annotations

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
    return {
        "role": ck.role,
        "architecture": arch,
        "parameters": f"{count_params(ck.model):,}",
        "GFLOP": f"{count_flops(ck.model, size) / 1e9:.2f} per {size}^{cfg.spatial_dims} input",
        "normalisation": norm,
        "training": training or "unknown",
        "metrics": metrics or "none recorded",
        "teacher": (ck.teacher_hash or "")[:12] or "-",
    }
