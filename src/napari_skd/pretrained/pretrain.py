"""Pretraining the shipped generalists on the corpus stream (run once by the developers, never by users).

    python -m napari_skd.pretrained.pretrain teacher --model teacher-tiny --out runs/pre/teacher.pt --max-time 2h
    python -m napari_skd.pretrained.pretrain student --teacher runs/pre/teacher.pt --out runs/pre/student.pt ...

``teacher`` trains a network alone on the stream (supervised, L1 to the clean patch); ``student`` distils a student
from a pretrained teacher on the same stream with the skd objective. Both go through the project's ``Trainer``
(wall-time budget, cosine schedule, resumable state beside the output) and save a checkpoint whose record holds the
corpus manifest and its hash, steps, seconds, device and the validation curve on held-out synthetic and natural
images, with a plateau verdict.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import load_checkpoint, save_checkpoint
from ..device import channels_last, resolve_device
from ..distillation.config import LossConfig, TrainConfig
from ..distillation.objectives import DistillObjective, StudentWithProjections
from ..distillation.trainer import Trainer
from ..errors import InputError
from ..models import build_model
from ..normalize import Normalization
from .corpus import PMAX, PMIN, Corpus, CorpusStream, build_corpus, psnr

#: What the shipped generalists store as their normalisation: a placeholder that restore replaces with each input's
#: own percentiles (``record["normalization"] == "per-input"``).
PER_INPUT = Normalization(pmin=PMIN, pmax=PMAX, low=0.0, high=1.0)


class StreamLoss:
    """Supervised L1 on the stream (a network trained alone)."""

    def __init__(self, stream: CorpusStream, batch: int):
        self.stream, self.batch = stream, batch

    def __call__(self, model: torch.nn.Module, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        b = self.stream.batch(step, self.batch)
        loss = F.l1_loss(model(b.input), b.target)
        return loss, {"l1": float(loss.detach())}


def validate(model: torch.nn.Module, stream: CorpusStream) -> dict[str, float]:
    """PSNR of the model and of the noisy input on each held-out set."""
    out: dict[str, float] = {}
    model.eval()
    with torch.no_grad():
        for name, b in stream.validation.items():
            pred = torch.cat([model(b.input[i : i + 16]).float() for i in range(0, len(b.input), 16)])
            out[f"psnr_{name}"] = psnr(pred, b.target)
            out[f"psnr_input_{name}"] = psnr(b.input, b.target)
    model.train()
    return out


def plateau(validations: list[dict], key: str) -> dict:
    """Whether the validation curve has flattened: the gain over the last fifth of the run, in dB."""
    points = [(v["seconds"], v[key]) for v in validations if key in v and v.get("seconds") is not None]
    if len(points) < 3:
        return {"reached": False, "last_fifth_gain_db": None}
    t_end = points[-1][0]
    earlier = [p for t, p in points if t <= 0.8 * t_end]
    gain = points[-1][1] - (earlier[-1] if earlier else points[0][1])
    return {"reached": bool(gain < 0.1), "last_fifth_gain_db": round(float(gain), 3)}


def run(args: argparse.Namespace) -> Path:
    if args.threads:
        torch.set_num_threads(args.threads)
    device, where = resolve_device(args.device)
    if device.type == "cuda":  # fixed shapes: let cuDNN pick its kernels; TF32 matmuls outside autocast
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
    print(f"pretraining a {args.role}, {where}", flush=True)
    corpus = _corpus(args)
    stream = CorpusStream(corpus, args.patch, device, seed=args.seed)
    cfg = TrainConfig(max_time=args.max_time, lr=args.lr, warmup_steps=args.warmup, val_every=args.val_every,
                      checkpoint_every=args.val_every, device=args.device, seed=args.seed)  # fmt: skip
    if args.steps:
        cfg = cfg.model_copy(update={"steps": args.steps})
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fingerprint = json.dumps([vars(args).get(k) for k in ("role", "model", "teacher", "patch", "batch", "lr")])
    teacher_ck = None
    if args.role == "teacher":
        model = build_model(args.model)
        loss_fn = StreamLoss(stream, args.batch)
        trainable = model
    else:
        teacher_ck = load_checkpoint(args.teacher)
        teacher = teacher_ck.model.to(device, memory_format=channels_last(2)).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        model = build_model(args.model)
        if args.init:  # start from a network already trained on the stream
            model.load_state_dict(load_checkpoint(args.init).model.state_dict())
        loss = LossConfig(method=args.method)
        trainable = StudentWithProjections(model, teacher_ck.config.feature_channels, loss.levels, loss.method)
        loss_fn = DistillObjective(teacher, loss, stream, args.batch, device)
    trainer = Trainer(trainable, cfg, device, out.with_name(out.name + ".state"), fingerprint)
    resumed = trainer.try_resume()
    t0 = time.perf_counter()
    last = [t0]

    def report(event) -> None:
        if event.metrics or time.perf_counter() - last[0] > 30:
            last[0] = time.perf_counter()
            print(f"step {event.step} {trainer.seconds:.0f}s {event.losses} {event.metrics}", flush=True)

    done = trainer.run(loss_fn, lambda: validate(model, stream), report)
    validations = [{"step": int(h["step"]), "seconds": h.get("seconds"),
                    **{k[4:]: v for k, v in h.items() if k.startswith("val_")}}
                   for h in trainer.history if "seconds" in h]  # fmt: skip
    record = {
        "pretrained": True,
        "normalization": "per-input",
        "corpus": corpus.manifest,
        "corpus_hash": corpus.manifest_hash,
        "role": args.role,
        "method": args.method if args.role == "student" else "supervised (L1 to the clean patches)",
        "steps": trainer.step,
        "seconds": round(trainer.seconds, 1),
        "seconds_this_run": round(time.perf_counter() - t0, 1),
        "resumed": resumed,
        "completed": done,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "batch": args.batch,
        "patch": args.patch,
        "lr": args.lr,
        "degradations": "blind: gaussian sigma 0-0.25, poisson-gaussian peak 1-100 (log-uniform) + read 0-0.05, "
        "rician 0-0.15; 10 % mild blur 0.3-1 px; per-input percentile normalisation",
        "validations": validations,
        "metrics": validations[-1] if validations else {},
        "plateau": plateau(validations, "psnr_natural" if corpus.val_natural.size else "psnr_synthetic"),
        "seed": args.seed,
        "init": args.init,
    }
    model.to(memory_format=torch.contiguous_format)
    save_checkpoint(out, model.cpu(), role=args.role, norm=PER_INPUT, record=record, teacher=teacher_ck)
    if done:
        trainer.discard_state()
    print(f"saved {out}: {trainer.step} steps, {trainer.seconds:.0f} s, {record['metrics']}", flush=True)
    return out


def _corpus(args: argparse.Namespace) -> Corpus:
    """Build the corpus, or load it from ``--cache`` (an .npz built by an earlier run with the same settings)."""
    cache = Path(args.cache) if args.cache else None
    if cache is not None and cache.exists():
        z = np.load(cache, allow_pickle=False)
        corpus = Corpus(z["images"], z["val_synthetic"], z["val_natural"], json.loads(str(z["manifest"])))
        built = corpus.manifest["synthetic"]
        wanted = {"count": args.synthetic, "size": args.size, "seed": args.seed}
        if {k: built[k] for k in wanted} != wanted or corpus.manifest["natural_crops"] > args.natural_crops:
            raise InputError(
                f"the corpus cache {cache} was built with other settings ({built}, "
                f"{corpus.manifest['natural_crops']} natural crops); delete it or give another --cache"
            )
        return corpus
    t = time.perf_counter()
    corpus = build_corpus(args.synthetic, args.size, args.seed, args.natural_crops, args.workers)
    print(f"corpus: {len(corpus.images)} images in {time.perf_counter() - t:.0f} s", flush=True)
    if cache is not None:
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(tmp, images=corpus.images, val_synthetic=corpus.val_synthetic, val_natural=corpus.val_natural,
                 manifest=json.dumps(corpus.manifest))  # fmt: skip
        os.replace(tmp, cache)
    return corpus


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("role", choices=["teacher", "student"])
    p.add_argument("--model", default="teacher-tiny", help="preset to train (teacher) or distil (student)")
    p.add_argument("--teacher", help="pretrained teacher checkpoint (student)")
    p.add_argument("--method", default="skd", help="distillation method (student)")
    p.add_argument("--init", help="checkpoint whose weights the student starts from (student)")
    p.add_argument("--out", required=True)
    p.add_argument("--max-time", default="2h")
    p.add_argument("--steps", type=int, default=0)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--patch", type=int, default=96)
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--synthetic", type=int, default=4000, help="dead-leaves images in the pool")
    p.add_argument("--natural-crops", type=int, default=1400, help="crops of the photographs in the pool")
    p.add_argument("--size", type=int, default=256, help="side of the pool's images")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes building the corpus")
    p.add_argument("--cache", help="corpus cache (.npz), built once and reused")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    return p


if __name__ == "__main__":
    run(parser().parse_args())
