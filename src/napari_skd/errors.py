"""Project exceptions. Messages are written for the user: what was wrong, what was expected, what to do."""

from __future__ import annotations

import errno


class SkdError(Exception):
    """Base class of every error napari-skd raises on purpose."""


class InputError(SkdError):
    """Bad input or configuration from the user (CLI exit code 2)."""


class ConfigError(InputError):
    """A configuration value is invalid."""


class CheckpointError(InputError):
    """A checkpoint file is missing, damaged, unsafe or of an unknown format."""


def write_error(path: object, err: OSError, then: str) -> InputError | None:
    """A failed write as a message for the user (a full disk, a read-only place), or None when it is neither;
    ``then`` says what to do once the cause is fixed (e.g. "rerun the same job to resume")."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return InputError(f"the disk is full (or over its quota) while writing {path} ({err.strerror}): free some "
                          f"space or write to another disk, then {then}")  # fmt: skip
    if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return InputError(f"cannot write {path} ({err.strerror}): choose a place you can write to, then {then}")
    return None


def config_error(name: str, exc) -> ConfigError:
    """A pydantic ``ValidationError`` as one line per wrong setting: its place and the reason."""
    lines = [f"  {'.'.join(str(p) for p in e['loc']) or '(job)'}: {e['msg']}" for e in exc.errors()]
    return ConfigError(f"invalid {name} configuration:\n" + "\n".join(lines))
