"""YAML job files merged with command-line flags (flags win)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from ..errors import InputError
from .flags import merge, overrides


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A job file as a dict, with user-facing errors."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"job file not found: {path}")
    try:
        job = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(job, dict):
        raise InputError(f"{path} must hold a mapping of settings (key: value), not {type(job).__name__}")
    return job


def load_job(args: argparse.Namespace) -> dict[str, Any]:
    """The job of ``--config`` (if any) with every given flag applied on top."""
    base = read_yaml(args.config) if args.config else {}
    return merge(base, overrides(args))
