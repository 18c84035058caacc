"""Turning a pretrained checkpoint into the shipped file: weights stored in float16, outputs checked against float32.

    python -m napari_skd.pretrained.ship SRC.pt DST.pt [--check corpus.npz]

Loading casts the weights back to float32, so a shipped model computes in float32 with weights rounded to float16.
The largest output difference from the float32 original, on held-out corpus patches in model units, is recorded as
``record["fp16_max_abs_diff"]`` and must stay under :data:`TOLERANCE`.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from ..checkpoint import load_checkpoint
from ..errors import CheckpointError
from .pretrain import plateau

#: Largest allowed output difference (model units, data range 1) between float16 storage and float32.
TOLERANCE = 1e-3


def max_output_diff(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> float:
    """Largest |a(x) - b(x)| in float32 on the CPU."""
    with torch.no_grad():
        return float((a.float().cpu()(x) - b.float().cpu()(x)).abs().max())


def to_float16(src: str | os.PathLike, dst: str | os.PathLike, probe: torch.Tensor) -> float:
    """Write ``src`` with float16 weights to ``dst``; returns the output difference on ``probe`` (N, C, Y, X)."""
    obj = torch.load(src, map_location="cpu", weights_only=True)
    obj["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in obj["state_dict"].items()}
    tmp = Path(str(dst) + ".tmp")
    torch.save(obj, tmp)
    diff = max_output_diff(load_checkpoint(src).model, load_checkpoint(tmp).model, probe)
    if diff > TOLERANCE:
        tmp.unlink()
        raise CheckpointError(f"float16 weights change {src}'s output by {diff:.2e} > {TOLERANCE}; ship float32")
    record = json.loads(obj.get("record") or "{}")
    record.update(storage="float16", fp16_max_abs_diff=diff)
    obj["record"] = json.dumps(record)
    torch.save(obj, tmp)
    os.replace(tmp, dst)
    return diff


def annotate(src: str | os.PathLike, dst: str | os.PathLike, role: str | None = None, **record: object) -> None:
    """Copy ``src`` to ``dst`` with its role and record fields updated (weights and hashes unchanged)."""
    obj = torch.load(src, map_location="cpu", weights_only=True)
    if role is not None:
        obj["role"] = role
        record = {"role": role} | record
    obj["record"] = json.dumps(json.loads(obj.get("record") or "{}") | record)
    tmp = Path(str(dst) + ".tmp")
    torch.save(obj, tmp)
    load_checkpoint(tmp)  # still a valid checkpoint
    os.replace(tmp, dst)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--check", help="corpus cache (.npz) whose validation images are the probe (float16 conversion)")
    p.add_argument("--role", choices=["teacher", "student"], help="set the role (no conversion)")
    p.add_argument("--cpu-step-seconds", type=float, help="seconds one training step takes on a 2-core CPU")
    p.add_argument("--name", help="the shipped name, recorded")
    args = p.parse_args()
    if args.check is None:
        rec = load_checkpoint(args.src).record
        extra: dict = {"plateau": plateau(rec.get("validations", []), "psnr_natural")}
        if args.cpu_step_seconds:
            cpu = rec["steps"] * args.cpu_step_seconds
            extra["cpu_equivalent"] = {"seconds_per_step_2_cores": args.cpu_step_seconds, "cpu_hours": cpu * 2 / 3600}
        if args.name:
            extra["name"] = args.name
        annotate(args.src, args.dst, args.role, **extra)
        print(f"{args.dst}: {extra}")
        return
    import numpy as np

    z = np.load(args.check, allow_pickle=False)
    clean = torch.from_numpy(np.concatenate([z["val_synthetic"][:4], z["val_natural"][:4]])[:, None, :128, :128])
    probe = clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    print(f"{args.dst}: float16 weights, max output difference {to_float16(args.src, args.dst, probe):.2e}")


if __name__ == "__main__":
    main()
