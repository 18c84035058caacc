"""napari-skd's record of an output, for both kinds of target, and the rules of what may happen to an output.

The record is a JSON dict: the job description and its fingerprint, the number of blocks, a bitmap of finished
blocks (base64), ``complete``, the input's intensity unit, and (written by the run) how the run executed. An OME-Zarr
store keeps it under ``attributes['napari_skd']`` of its root group (zarr rewrites ``zarr.json`` atomically, so a
crash leaves the old or the new record); a single file embeds it (``io/file_writers.py``).

The rules (:func:`judge`): a partial output of the same job (same fingerprint) is resumed; only an output napari-skd
wrote is ever cleared, and only with ``overwrite``; a complete output is never passed off as another job's result.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from ...errors import InputError

KEY = "napari_skd"

#: What a job may do with its output path: create it, resume it, clear it (``overwrite``), or only add a QC report
#: to a finished output of this same job.
Verdict = Literal["new", "resume", "clear", "add-qc"]


def fingerprint(job: dict[str, Any]) -> str:
    """SHA-256 of a job description (input identity, checkpoint hash and every option that changes the bytes)."""
    return hashlib.sha256(json.dumps(job, sort_keys=True, default=str).encode()).hexdigest()


def encode_done(done: Sequence[bool]) -> str:
    bits = bytearray((len(done) + 7) // 8)
    for i, d in enumerate(done):
        if d:
            bits[i // 8] |= 1 << (i % 8)
    return base64.b64encode(bytes(bits)).decode()


def decode_done(text: str, count: int) -> list[bool]:
    bits = base64.b64decode(text) if text else b""
    return [bool(i // 8 < len(bits) and bits[i // 8] >> (i % 8) & 1) for i in range(count)]


def new_record(job: dict[str, Any], blocks: int, intensity_unit: str | None) -> dict[str, Any]:
    """The record of a new output: its job and fingerprint, the block count, no finished block yet."""
    return {
        "job": job,
        "fingerprint": fingerprint(job),
        "blocks": blocks,
        "done": "",
        "complete": False,
        "intensity_unit": intensity_unit,
    }


def complete_for(record: dict[str, Any] | None, job: dict[str, Any]) -> bool:
    """Whether ``record`` is that of a complete output of exactly this job (same fingerprint): a rerun may skip it."""
    return record is not None and bool(record.get("complete")) and record.get("fingerprint") == fingerprint(job)


def judge(output: Path, record: dict[str, Any] | None, ours: bool, job: dict[str, Any], overwrite: bool) -> Verdict:
    """What may happen to an existing output: ``"resume"`` (a partial result of this same job), ``"clear"`` (an
    output napari-skd wrote, with ``overwrite``), or an InputError saying why not. What napari-skd did not write
    is refused whatever ``overwrite`` says."""
    if record is not None and record.get("fingerprint") == fingerprint(job):
        if not record.get("complete"):
            return "resume"
        if overwrite:
            return "clear"
        raise InputError(f"the output {output} is already complete for this same job; {_HINT}")
    if not ours:
        raise InputError(foreign(output, "exists"))
    if overwrite:
        return "clear"
    if record is None:
        raise InputError(f"the output {output} was written by napari-skd, but not by a restoration; {_HINT}")
    changed = sorted(k for k in job if record.get("job", {}).get(k) != job[k])
    raise InputError(
        f"the output {output} holds a {'complete' if record.get('complete') else 'partial'} result of a "
        f"different job (differs in: {', '.join(changed) or 'fingerprint'}); rerunning can only resume the same "
        f"input, checkpoint and options; {_HINT}"
    )


def foreign(output: Path, what: str) -> str:
    """The refusal of a path napari-skd did not write."""
    return (
        f"the output {output} {what} and was not written by napari-skd (it carries no napari-skd record): "
        "napari-skd never replaces or deletes what it did not write, even with overwrite; choose another output path"
    )


_HINT = "pass overwrite=True (--overwrite) to replace it, or choose another output path"
