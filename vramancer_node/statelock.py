"""One daemon per state directory, enforced with an advisory ``flock``.

The lock file holds the owner's pid for the error message; the lock itself is the
kernel's ``flock``, released automatically when the process dies, so a crashed
daemon never leaves a lock that blocks the next start.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from vramancer_node.layout import LOCK_FILE_NAME


class StateLockedError(Exception):
    """Another daemon is running with this state directory."""


class StateLock:
    """Hold the state directory's lock for the lifetime of a daemon."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / LOCK_FILE_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StateLockedError(
                f"another vramancer-node (pid {owner}) is running with state dir {self.path.parent}"
            ) from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
