"""The one way VRAMancer writes a state file: atomically and durably.

Theory of operation
-------------------
A crash (power cut, SIGKILL) must leave either the old file or the new one, never a
torn mix, and a file that was reported written must survive the crash.  So:

1. write the bytes to a temporary file in the *same directory*, created with
   ``O_CREAT | O_EXCL`` and the final mode (permissions are right from the first
   byte: a secret is never briefly world-readable, and no ``chmod`` follows);
2. ``fsync`` the temporary file (its data is on disk);
3. move it into place — ``rename`` to replace, or ``link`` when the caller asks for
   *exclusive* creation, which fails with :class:`FileExistsError` if the name
   already exists (``O_EXCL`` semantics for the final name, atomically);
4. ``fsync`` the directory (the new name is on disk).

Every state file goes through :func:`atomic_write`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

STATE_FILE_MODE = 0o600
"""Owner read/write only: state files may hold secrets."""


def fsync_directory(directory: Path) -> None:
    """Flush a directory entry change (create, rename, unlink) to disk."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: Path, data: bytes, *, mode: int = STATE_FILE_MODE, exclusive: bool = False
) -> None:
    """Write ``data`` to ``path`` atomically and durably.

    With ``exclusive=True`` the call fails with :class:`FileExistsError` when ``path``
    exists, and never replaces it.  The file is created with ``mode`` (subject to the
    umask, which can only remove bits).
    """
    path = Path(path)
    directory = path.parent
    tmp = directory / f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            os.link(tmp, path)
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_directory(directory)
