"""Serving the API on the node's Unix socket with Hypercorn's trio worker.

Resource handling
-----------------
The socket is bound under a temporary name, given mode 0600, then renamed to
``api.sock``: no client ever sees it with a looser mode.  The daemon holds the
state directory's lock (:mod:`vramancer_node.statelock`) before binding, so a
leftover ``api.sock`` can only be a stale file from a crashed run and is removed.
The socket file is removed again when the server stops.

Error handling
--------------
A path too long for ``AF_UNIX`` (about 107 bytes) is an :class:`ApiSocketError`
naming the limit, raised before anything is bound.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

API_SOCKET_MODE = 0o600
UNIX_PATH_BYTES_MAX = 107  # sun_path is 108 bytes including the terminating NUL
LISTEN_BACKLOG = 64


class ApiSocketError(Exception):
    """The API socket cannot be created."""


def bind_unix_socket(path: Path) -> socket.socket:
    """Bind and listen on ``path`` with mode 0600 from the moment it is visible."""
    if len(os.fsencode(path)) > UNIX_PATH_BYTES_MAX:
        raise ApiSocketError(
            f"API socket path {path} is {len(os.fsencode(path))} bytes; Unix sockets allow "
            f"at most {UNIX_PATH_BYTES_MAX}: choose a shorter --state-dir"
        )
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # stale: we hold the state lock, so no live daemon owns it
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(os.fspath(tmp))
        os.chmod(tmp, API_SOCKET_MODE)  # before the name clients use exists
        os.rename(tmp, path)
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise ApiSocketError(f"cannot bind API socket {path}: {exc}") from exc
    return sock


async def serve_api(
    app: Any,
    path: Path,
    *,
    shutdown_trigger: trio.Event,
    grace_s: float,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on the Unix socket ``path`` until ``shutdown_trigger`` is set."""
    sock = bind_unix_socket(path)
    config = HypercornConfig()
    config.bind = [f"fd://{sock.detach()}"]
    config.graceful_timeout = grace_s
    config.accesslog = None
    config.errorlog = None  # errors surface through our own logging
    try:
        await serve(app, config, shutdown_trigger=shutdown_trigger.wait, task_status=task_status)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
