"""The writer lock of a local store: one writing process at a time, readers told who writes.

The lock is ``fcntl.flock`` on a file beside the store (``.<name>.lock`` in the store's parent folder, so the
store's own files never change by locking it); the holder writes its pid, host and start time into it. The
kernel releases the lock when the holder exits, however it exits, so a crashed writer never blocks the next.
A second writer waits up to its timeout, then gets :class:`~blox_env.errors.StoreBusyError` naming the
holder. Readers do not lock: :func:`lock_holder` tells them whether a writer is active (for "being written"
messages).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import IO, Any

from blox_env.errors import InvalidArgumentError, StoreBusyError

__all__ = ["WriterLock", "lock_holder", "lock_path"]


def lock_path(location: str | os.PathLike[str]) -> Path:
    """The lock file of the store at ``location`` (a local folder)."""
    p = Path(location).absolute()
    return p.parent / f".{p.name}.lock"


def _describe(owner: dict[str, Any] | None) -> str:
    if not owner:
        return "another process"
    since = owner.get("since")
    when = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else ""
    return f"pid {owner.get('pid')} on {owner.get('host')}{when}"


def _read_owner(fh: IO[str]) -> dict[str, Any] | None:
    try:
        fh.seek(0)
        owner = json.loads(fh.read(4096) or "null")
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def lock_holder(location: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The writer holding the store's lock (``{pid, host, since}``; ``{}`` if it wrote nothing yet), or None."""
    path = lock_path(location)
    try:
        fh = path.open("r", encoding="utf-8")
    except OSError:
        return None
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_owner(fh) or {}
        except OSError:
            return None
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return None


class WriterLock:
    """An exclusive writer lock on a local store; :meth:`acquire` waits up to ``timeout`` seconds."""

    def __init__(self, location: str | os.PathLike[str], *, timeout: float = 0.0) -> None:
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 <= timeout < float("inf"):
            raise InvalidArgumentError(f"lock timeout must be a finite number of seconds >= 0, got {timeout!r}")
        self.location = Path(location)
        self.path = lock_path(location)
        self.timeout = float(timeout)
        self._fh: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def acquire(self) -> WriterLock:
        """Take the lock or raise StoreBusyError naming the holder after ``timeout`` seconds."""
        if self._fh is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+", encoding="utf-8")
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    owner = _read_owner(fh)
                    fh.close()
                    waited = f" (waited {self.timeout:g} s)" if self.timeout else ""
                    raise StoreBusyError(
                        f"store {self.location} is being written by {_describe(owner)}{waited}: only one process "
                        f"writes a store at a time; wait for it to finish (or pass a lock timeout to wait), or "
                        f"write to another store"
                    ) from None
                time.sleep(min(0.05, max(deadline - time.monotonic(), 0.0)))
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}))
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        """Give the lock back (the file stays: removing it would race with the next writer)."""
        fh, self._fh = self._fh, None
        if fh is None:
            return
        with contextlib.suppress(OSError):
            fh.seek(0)
            fh.truncate()
            fh.flush()
        with contextlib.suppress(OSError):
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
