"""What an exported package says about the training data: file names are withheld unless asked for.

A checkpoint's record names the files it was trained on (``data.degraded``, ``data.clean``, ``data.unlabelled``, the
teacher's path). Clinical file names can be personal data, and a package is meant to be shared, so the export keeps
how many files there were and withholds their names, unless ``include_paths`` is set.
"""

from __future__ import annotations

from typing import Any

#: Record keys whose values are file paths, globs or folders.
PATH_KEYS = frozenset({"degraded", "clean", "unlabelled", "teacher", "teacher_path", "source", "input", "output"})
WITHHELD = "<withheld: export with include_paths to keep file names>"


def withhold_paths(record: Any) -> Any:
    """``record`` with every path under a :data:`PATH_KEYS` key replaced by a note (lists keep their length)."""
    if isinstance(record, dict):
        return {k: _withheld(v) if k in PATH_KEYS else withhold_paths(v) for k, v in record.items()}
    if isinstance(record, list):
        return [withhold_paths(v) for v in record]
    return record


def _withheld(value: Any) -> Any:
    if isinstance(value, str):
        return value if value.startswith("<") else WITHHELD  # "<array>" and the like name no file
    if isinstance(value, list | tuple):
        return f"<{len(value)} paths withheld: export with include_paths to keep file names>"
    return value
