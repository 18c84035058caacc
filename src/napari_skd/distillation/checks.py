"""Checks both entry points run before any work: the job validates, and the output may be written.

Inputs are never modified, and an existing output is replaced only if napari-skd wrote it (even with ``overwrite``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..checkpoint import written_by_us
from ..errors import InputError, config_error
from ..io import expand_sources


def validated(cls: type[BaseModel], config: Any) -> Any:
    if isinstance(config, cls):
        return config
    try:
        return cls.model_validate(config)
    except ValidationError as exc:
        raise config_error(cls.__name__, exc) from exc


def output_paths(output: str, overwrite: bool) -> tuple[Path, Path]:
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


def refuse_foreign(output: Path) -> None:
    """An existing output may be replaced only if it is a napari-skd checkpoint (even with overwrite)."""
    if output.exists() and not written_by_us(output):
        raise InputError(
            f"the output {output} exists and is not a napari-skd checkpoint: napari-skd never replaces what it did "
            "not write, even with overwrite; choose another output path"
        )


def refuse_input_as_output(output: Path, *sources: Any) -> None:
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
