"""Opening the audit log of a stopped node, read-only.

Theory of operation
-------------------
``vramancer audit verify|tail|export|proof`` must work when the daemon is stopped, and
must then neither create nor change a single file.  :func:`open_readonly` opens the
environment with ``readonly=True, lock=False``: LMDB opens ``data.mdb`` read-only and
does not touch ``lock.mdb`` (with ``lock=True`` even a reader writes its slot into the
lock file, and would create it if missing).  Without LMDB's lock, reading is only safe
while nothing writes, so the opener first takes a *shared* ``flock`` on the daemon's
``node.lock`` — which a running daemon holds exclusively — and refuses with
:class:`~vramancer_node.audit.errors.StoreBusyError` if a daemon runs; while the
reader is open, a daemon cannot start on the same state directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

import lmdb

from vramancer_node.audit.errors import StoreBusyError, StoreCorruptError, StoreMissingError
from vramancer_node.audit.layout import DB_NAMES, audit_dir
from vramancer_node.audit.view import AuditReader, Databases, ResizeGate
from vramancer_node.layout import LOCK_FILE_NAME

__all__ = ["READONLY_MAP_SIZE_BYTES_MIN", "open_readonly"]

READONLY_MAP_SIZE_BYTES_MIN = 64 * 1024
"""Map of a read-only opener: at least the data file (LMDB extends it to the file)."""


def open_readonly(state_dir: Path) -> AuditReader:
    """Open the audit log of a *stopped* node read-only; see the module docstring.

    Never creates or writes a file.  Raises :class:`StoreMissingError` if there is no
    log, :class:`StoreBusyError` if a daemon runs with ``state_dir``.
    """
    state_dir = Path(state_dir)
    directory = audit_dir(state_dir)
    data_file = directory / "data.mdb"
    if not data_file.is_file():
        raise StoreMissingError(f"no audit log in {state_dir} ({data_file} does not exist)")
    lock_fd = _share_state_lock(state_dir)
    try:
        env = lmdb.open(
            str(directory),
            map_size=max(data_file.stat().st_size, READONLY_MAP_SIZE_BYTES_MIN),
            subdir=True,
            readonly=True,
            lock=False,
            create=False,
            max_dbs=len(DB_NAMES),
        )
        try:
            dbs = Databases.open(env, create=False)
        except BaseException:
            env.close()
            raise
    except BaseException as exc:
        if lock_fd is not None:
            os.close(lock_fd)
        if isinstance(exc, (OSError, lmdb.Error)):
            raise StoreCorruptError(f"cannot open the audit store in {directory}: {exc}") from exc
        raise

    def release() -> None:
        if lock_fd is not None:
            os.close(lock_fd)

    return AuditReader(env, dbs, ResizeGate(), on_close=release)


def _share_state_lock(state_dir: Path) -> int | None:
    """Take ``node.lock`` shared (a running daemon holds it exclusively); return its fd,
    or ``None`` when no daemon ever ran here.  Opened read-only: nothing is created."""
    path = state_dir / LOCK_FILE_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise StoreBusyError(
            f"a vramancer-node (pid {owner}) is running with state dir {state_dir}: "
            f"ask it through its API instead of reading its files"
        ) from None
    except OSError:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    return fd
