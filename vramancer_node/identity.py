"""Loading and creating the node's key file on disk.

The pure format lives in :mod:`crypto.identity`; this module owns the file: it is
created once, exclusively, with mode 0600 (see :mod:`vramancer_node.atomic`), and it
is never replaced, repaired or ``chmod``-ed afterwards.  A key file that is corrupt or
that other users can read is a clear :class:`IdentityFileError` — the operator
decides what to do, because silently minting a new key would silently make this
machine a different node.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from crypto.identity import (
    IdentityError,
    NodeIdentity,
    decode_key_file,
    encode_key_file,
    generate_identity,
)
from vramancer_node.atomic import STATE_FILE_MODE, atomic_write
from vramancer_node.layout import KEY_FILE_NAME

STATE_DIR_MODE = 0o700


class IdentityFileError(Exception):
    """The node key file cannot be used; the message says why and what to do."""


def ensure_state_dir(state_dir: Path) -> Path:
    """Create ``state_dir`` (mode 0700) if needed and return it."""
    state_dir = Path(state_dir)
    try:
        state_dir.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise IdentityFileError(f"cannot create state directory {state_dir}: {exc}") from exc
    if not state_dir.is_dir():
        raise IdentityFileError(f"state directory {state_dir} is not a directory")
    return state_dir


def key_path(state_dir: Path) -> Path:
    return Path(state_dir) / KEY_FILE_NAME


def _check_key_file_mode(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise IdentityFileError(f"key file {path} is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise IdentityFileError(
            f"key file {path} has mode {mode:04o}: other users can read it. "
            f"It must be {STATE_FILE_MODE:04o}; if you trust its contents run "
            f"`chmod 600 {path}`, otherwise remove it to create a new identity"
        )
    if st.st_uid != os.geteuid():
        raise IdentityFileError(
            f"key file {path} is owned by uid {st.st_uid}, not by this user ({os.geteuid()})"
        )


def load_identity(state_dir: Path, passphrase: bytes | None = None) -> NodeIdentity:
    """Load the node identity from ``state_dir``; it must exist."""
    path = key_path(state_dir)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError as exc:
        raise IdentityFileError(
            f"no node identity in {state_dir} (run `vramancer-node identity init` "
            f"or `vramancer-node join` to create one)"
        ) from exc
    except OSError as exc:
        raise IdentityFileError(f"cannot open key file {path}: {exc}") from exc
    with os.fdopen(fd, "rb") as handle:
        _check_key_file_mode(path, os.fstat(handle.fileno()))
        data = handle.read()
    try:
        return decode_key_file(data, passphrase)
    except IdentityError as exc:
        raise IdentityFileError(f"key file {path}: {exc}") from exc


def create_identity(state_dir: Path, passphrase: bytes | None = None) -> NodeIdentity:
    """Create a new identity in ``state_dir``; fails if one exists already."""
    ensure_state_dir(state_dir)
    identity = generate_identity()
    try:
        atomic_write(key_path(state_dir), encode_key_file(identity, passphrase), exclusive=True)
    except FileExistsError as exc:
        raise IdentityFileError(f"key file {key_path(state_dir)} exists already") from exc
    return identity


def load_or_create_identity(
    state_dir: Path, passphrase: bytes | None = None
) -> tuple[NodeIdentity, bool]:
    """Return ``(identity, created)``: the existing identity, or a new one."""
    if key_path(state_dir).exists() or key_path(state_dir).is_symlink():
        return load_identity(state_dir, passphrase), False
    try:
        return create_identity(state_dir, passphrase), True
    except IdentityFileError:
        # Another process created it between our check and our write: use theirs.
        if key_path(state_dir).exists():
            return load_identity(state_dir, passphrase), False
        raise
