"""systemd service notifications (``sd_notify``) without a dependency.

Theory of operation
-------------------
Under ``Type=notify`` systemd passes ``$NOTIFY_SOCKET``, the address of a datagram
``AF_UNIX`` socket: an absolute path, or ``@name`` for the abstract namespace (a
leading NUL byte on the wire).  Each datagram holds newline-separated
``KEY=VALUE`` assignments.  The daemon sends:

* ``READY=1`` (with a ``STATUS=`` line) once every service has started — systemd
  then considers the start finished;
* ``WATCHDOG=1`` every ``WatchdogSec/2`` from a trio task, and only while the node
  is healthy (ready): a blocked event loop or a node stuck outside ``running``
  stops the pings, and systemd restarts the service after ``WatchdogSec``;
* ``STOPPING=1`` when shutdown begins, and ``STATUS=`` lines on changes.

``$WATCHDOG_USEC`` carries the watchdog period; ``$WATCHDOG_PID``, when set, names
the process that must ping — another process's period is ignored (as
``sd_watchdog_enabled`` does).  Only the CLI reads the environment:
:meth:`SdNotifier.from_environ` takes the mapping, so the daemon never does.

Error handling
--------------
A malformed ``$NOTIFY_SOCKET`` or ``$WATCHDOG_USEC`` is a :class:`NotifyConfigError`
at start (the service would otherwise time out mysteriously).  Sending never
blocks the event loop (the socket is non-blocking) and never raises: a lost
notification is counted in :attr:`SdNotifier.send_failures` and logged once.
Without ``$NOTIFY_SOCKET``, :data:`NO_NOTIFY` does nothing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from typing import Protocol

import trio

from vramancer_node.logs import get_logger

log = get_logger("sdnotify")

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV = "WATCHDOG_USEC"
WATCHDOG_PID_ENV = "WATCHDOG_PID"
ENV_NAMES = (NOTIFY_SOCKET_ENV, WATCHDOG_USEC_ENV, WATCHDOG_PID_ENV)
"""What a service manager passes; the CLI removes them so child processes don't inherit them."""

STATUS_BYTES_MAX = 512
"""A STATUS= text longer than this is cut (systemctl shows one line)."""
SOCKET_PATH_BYTES_MAX = 107
"""sun_path holds 108 bytes including the terminating NUL."""
STATUS_INTERVAL_S = 10.0
"""How often the status line is refreshed when no watchdog asks for more."""


class NotifyConfigError(Exception):
    """``$NOTIFY_SOCKET``/``$WATCHDOG_USEC`` as passed by the service manager is unusable."""


class Notifier(Protocol):
    """What the daemon calls; :class:`SdNotifier` and :data:`NO_NOTIFY` implement it."""

    def ready(self, status: str) -> None: ...
    def status(self, status: str) -> None: ...
    def stopping(self, status: str) -> None: ...
    async def watchdog(
        self, healthy: Callable[[], bool], describe: Callable[[], str] | None = None
    ) -> None: ...


def _socket_address(text: str) -> str | bytes:
    if text.startswith("@"):
        name = b"\0" + text[1:].encode()
        if len(name) > SOCKET_PATH_BYTES_MAX + 1:
            raise NotifyConfigError(f"{NOTIFY_SOCKET_ENV}={text!r}: abstract name too long")
        return name
    if not text.startswith("/"):
        raise NotifyConfigError(
            f"{NOTIFY_SOCKET_ENV}={text!r}: expected an absolute path or @abstract-name"
            " (vsock addresses are not supported)"
        )
    if len(text.encode()) > SOCKET_PATH_BYTES_MAX:
        raise NotifyConfigError(f"{NOTIFY_SOCKET_ENV}={text!r}: path longer than 107 bytes")
    return text


def _watchdog_interval_s(environ: Mapping[str, str], pid: int) -> float | None:
    """Half the watchdog period in seconds, or None when this process need not ping."""
    usec_text = environ.get(WATCHDOG_USEC_ENV)
    if not usec_text:
        return None
    pid_text = environ.get(WATCHDOG_PID_ENV)
    if pid_text and pid_text.strip() != str(pid):
        return None  # the watchdog belongs to another process (our parent, say)
    try:
        usec = int(usec_text)
    except ValueError:
        raise NotifyConfigError(f"{WATCHDOG_USEC_ENV}={usec_text!r} is not an integer") from None
    if usec <= 0:
        raise NotifyConfigError(f"{WATCHDOG_USEC_ENV}={usec_text!r} must be positive")
    return usec / 1e6 / 2


class SdNotifier:
    """Sends notifications to the service manager's ``$NOTIFY_SOCKET``.

    ``watchdog_interval_s`` is half of ``WatchdogSec`` (None: no watchdog).
    """

    def __init__(self, address: str | bytes, watchdog_interval_s: float | None) -> None:
        self.address = address
        self.watchdog_interval_s = watchdog_interval_s
        self.sent = 0
        self.send_failures = 0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.setblocking(False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], pid: int | None = None) -> SdNotifier | None:
        """The notifier systemd asked for, or None without ``$NOTIFY_SOCKET``."""
        text = environ.get(NOTIFY_SOCKET_ENV)
        if not text:
            return None
        interval_s = _watchdog_interval_s(environ, os.getpid() if pid is None else pid)
        return cls(_socket_address(text), interval_s)

    def close(self) -> None:
        self._sock.close()

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines in one datagram; False (counted, logged once) if lost."""
        message = "\n".join(assignments).encode()
        try:
            self._sock.sendto(message, self.address)
        except OSError as exc:
            self.send_failures += 1
            if self.send_failures == 1:
                log.warning(
                    "cannot notify the service manager",
                    extra={"notify_socket": _shown(self.address), "detail": str(exc)},
                )
            return False
        self.sent += 1
        return True

    def ready(self, status: str) -> None:
        self.send("READY=1", _status_line(status))

    def status(self, status: str) -> None:
        self.send(_status_line(status))

    def stopping(self, status: str) -> None:
        self.send("STOPPING=1", _status_line(status))

    async def watchdog(
        self, healthy: Callable[[], bool], describe: Callable[[], str] | None = None
    ) -> None:
        """Ping ``WATCHDOG=1`` every interval while ``healthy()``, and send ``STATUS=``
        whenever ``describe()`` changes (checked every :data:`STATUS_INTERVAL_S` without a
        watchdog).  Returns at once when there is nothing to do; otherwise runs in the
        daemon's nursery until cancelled."""
        interval_s = self.watchdog_interval_s
        if interval_s is None and describe is not None:
            interval_s = STATUS_INTERVAL_S
        if interval_s is None:
            return
        shown = describe() if describe is not None else None  # sent with READY=1
        while True:
            await trio.sleep(interval_s)
            lines = []
            if self.watchdog_interval_s is not None and healthy():
                lines.append("WATCHDOG=1")
            if describe is not None and (text := describe()) != shown:
                lines.append(_status_line(text))
                shown = text
            if lines:
                self.send(*lines)


class _NoNotify:
    """Not started by a service manager: every notification is dropped."""

    def ready(self, status: str) -> None:
        pass

    def status(self, status: str) -> None:
        pass

    def stopping(self, status: str) -> None:
        pass

    async def watchdog(
        self, healthy: Callable[[], bool], describe: Callable[[], str] | None = None
    ) -> None:
        return


NO_NOTIFY: Notifier = _NoNotify()


def _status_line(status: str) -> str:
    one_line = " ".join(status.split())
    return "STATUS=" + one_line[:STATUS_BYTES_MAX]


def _shown(address: str | bytes) -> str:
    if isinstance(address, bytes):
        return "@" + address[1:].decode(errors="replace")
    return address
