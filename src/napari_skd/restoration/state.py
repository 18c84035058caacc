"""The record format of an output store and its safety rules: job fingerprint, finished blocks, the writer lock,
refusals (``store.OutputStore`` keeps the record up to date).

What a restoration job has done lives in the output store itself, under ``attributes['napari_skd']`` of the root
group: the job description and its fingerprint, the number of blocks, a bitmap of finished blocks (base64) and
``complete``. zarr rewrites ``zarr.json`` atomically (temporary file + rename), so a crash leaves either the old or
the new record; a block is recorded only after its chunk is written, so a recorded block is always on disk.

One writer at a time: ``.napari_skd.lock`` in the store holds the writer's pid and host and is ``flock``-ed while the
job runs (the kernel releases the lock when the process dies, so a lock left by a dead process is taken over).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from ..errors import InputError
from ..io.writers import clear_store, owned_store, store_attributes

KEY = "napari_skd"
LOCK_NAME = ".napari_skd.lock"

OpenAs = Literal["new", "resume"]  # how a job opens its output
Verdict = Literal["new", "resume", "clear"]  # what may happen to what is at the output path


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


def read_record(path: Path) -> dict[str, Any] | None:
    """The restoration record of an existing store, or None when ``path`` holds no store written by restore."""
    record = (store_attributes(path) or {}).get(KEY)
    return record if isinstance(record, dict) and "fingerprint" in record else None


class WriterLock:
    """Exclusive writer lock on a store: ``flock`` on ``.napari_skd.lock`` holding ``{"pid", "host"}``."""

    def __init__(self, store: Path):
        self.path = store / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> None:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise InputError(
                    f"cannot write the output {self.path.parent}: {err}; choose a folder you can write to"
                ) from err
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _holder(fd)
                os.close(fd)
                raise InputError(
                    f"the output {self.path.parent} is being written by another job (pid {holder.get('pid', '?')} "
                    f"on {holder.get('host', '?')}): expected one writer per output; wait for that job to finish, "
                    "or choose another output path"
                ) from None
            try:  # the file may have been removed by its previous owner between our open and our flock
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        holder = _holder(fd)
        if holder.get("host") not in (None, socket.gethostname()):
            os.close(fd)
            raise InputError(
                f"the output {self.path.parent} is locked by a job on host {holder['host']} (pid {holder.get('pid')}), "
                f"whose state cannot be checked from here; if no job is running there, delete {self.path}"
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self.fd)
        self.fd = None


def _holder(fd: int) -> dict[str, Any]:
    try:
        text = os.pread(fd, 4096, 0).decode()
        value = json.loads(text) if text else {}
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}


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


@contextlib.contextmanager
def locked_output(output: Path, job: dict[str, Any], overwrite: bool) -> Iterator[tuple[OpenAs, dict | None]]:
    """Check, lock and (with ``overwrite``) clear ``output``; yields ``(status, record)`` while holding the lock.

    ``status`` is ``"new"`` (nothing there yet, or cleared) or ``"resume"`` (a partial output of this same job).
    A complete output, a partial one of another job, or anything else at ``output`` is refused without
    ``overwrite``; a store another live process is writing is always refused.
    """
    _refuse_unless_overwrite(output, job, overwrite)  # before creating anything in someone's folder
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot write the output {output}: {err}; choose a folder you can write to") from err
    lock = WriterLock(output)
    lock.acquire()
    try:
        status = _refuse_unless_overwrite(output, job, overwrite)
        if status == "clear":
            clear_store(output, keep=(LOCK_NAME,))
            status = "new"
        yield status, read_record(output) if status == "resume" else None
    finally:
        lock.release()


def _refuse_unless_overwrite(output: Path, job: dict[str, Any], overwrite: bool) -> Verdict:
    """``"new"``, ``"resume"`` or ``"clear"`` (overwrite what is there), or an InputError saying why not."""
    if not output.exists():
        return "new"
    if not output.is_dir():
        raise InputError(foreign(output, "is a file"))
    if not [p for p in output.iterdir() if p.name != LOCK_NAME]:
        return "new"  # an empty folder (perhaps holding a dead writer's lock)
    return judge(output, read_record(output), owned_store(output), job, overwrite)


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


def remove_partial_files(store: Path) -> int:
    """Delete the temporary ``*.partial`` files a killed zarr write leaves behind (zarr writes via rename)."""
    count = 0
    for root, _, files in os.walk(store):
        for name in files:
            if name.endswith(".partial"):
                Path(root, name).unlink(missing_ok=True)
                count += 1
    return count
