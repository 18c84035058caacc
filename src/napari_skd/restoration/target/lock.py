"""One writer per output store: ``.napari_skd.lock`` in the store holds the writer's pid and host and is ``flock``-ed
while the job runs (the kernel releases the lock when the process dies, so a lock left by a dead process is taken
over; a lock held on another host cannot be checked from here and is refused)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from pathlib import Path
from typing import Any

from ...errors import InputError

LOCK_NAME = ".napari_skd.lock"


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

    @contextlib.contextmanager
    def held(self):
        """Hold the lock for the time of a ``with`` block."""
        self.acquire()
        try:
            yield self
        finally:
            self.release()


def _holder(fd: int) -> dict[str, Any]:
    try:
        text = os.pread(fd, 4096, 0).decode()
        value = json.loads(text) if text else {}
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}
