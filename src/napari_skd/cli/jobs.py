"""YAML job files with command-line overrides."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError


def load_job(args: argparse.Namespace) -> dict:
    import yaml

    path = Path(args.config)
    if not path.is_file():
        raise InputError(f"job file not found: {path}")
    try:
        job = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(job, dict):
        raise InputError(f"{path} must hold a mapping of settings (key: value), not {type(job).__name__}")
    train = job.setdefault("train", {})
    for key, value in (("steps", args.steps), ("device", args.device)):
        if value is not None:
            train[key] = value
    if args.output:
        job["output"] = args.output
    if args.overwrite:
        job["overwrite"] = True
    if getattr(args, "method", None):
        job.setdefault("loss", {})["method"] = args.method
    return job
