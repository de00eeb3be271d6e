"""Peer connections of a running node: the TCP listener and outgoing sessions.

Theory of operation
-------------------
The listener accepts TCP connections on ``network.listen`` and runs the responder
side of :mod:`vramancer_node.net.handshake` for each, under a deadline of
``network.connect_timeout_s``.  Outgoing sessions run the initiator side.  Every
outcome is counted in :attr:`PeerService.handshakes` (``ok`` or the failure
reason) and logged with the peer's address; an authenticated peer is logged with
its node id and certificate serial.

Until the membership and runtime services exist, a session ends right after the
handshake: it proves both sides are who they claim and that they belong together.

Error handling
--------------
A connection that fails in any way — garbage, a stall, a refused certificate, a
dropped socket — is closed and counted; the listener keeps serving everyone else.
Only ``trio.Cancelled`` (shutdown) passes through.
"""

from __future__ import annotations

import collections
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import trio

from crypto.noise.errors import NoiseError
from protocol.errors import RemoteProtocolError
from protocol.frames import ControlFrame, EndOfStream
from protocol.session import SERVICE_HELLO, decode_session_open, encode_session_open
from vramancer_node.config import parse_hostport
from vramancer_node.logs import get_logger
from vramancer_node.net.handshake import (
    Admission,
    Admitter,
    AuthenticatedPeer,
    Credentials,
    HandshakeFailed,
    TrustPolicy,
    exchange_verdicts,
    noise_handshake,
    request_admission,
    respond,
)
from vramancer_node.net.securestream import SecureStream

log = get_logger("peering")

CONNECTION_ERRORS = (
    HandshakeFailed,
    RemoteProtocolError,
    NoiseError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    OSError,
)


CLOSE_LINGER_S = 1.0
"""How long a refused connection is drained before it is closed."""
CLOSE_DRAIN_BYTES = 4096
SESSION_TIMEOUT_S = 30.0
"""Longest a service may hold a session open (push-pull, checkpoint exchange)."""

SessionHandler = Callable[[AuthenticatedPeer, SecureStream, bytes], Awaitable[None]]


def wall_clock() -> float:
    """Unix time, for certificate validity (trio's clock is monotonic)."""
    return time.time()


class PeerService:
    """Accepts and opens authenticated sessions with other members."""

    def __init__(
        self,
        creds: Credentials,
        policy: Callable[[], TrustPolicy | None],
        admitter: Callable[[], Admitter | None],
        *,
        listen: str,
        timeout_s: float,
    ) -> None:
        self.creds = creds
        self._policy = policy
        self._admitter = admitter
        self.listen = listen
        self.timeout_s = timeout_s
        self.handshakes: collections.Counter[str] = collections.Counter()
        self.bound: list[str] = []
        self._handlers: dict[str, tuple[SessionHandler, float | None]] = {}
        self.on_refused: Callable[[str, str], None] | None = None
        """Called with (reason, address) for every refused or failed handshake."""

    def _count(self, outcome: str, address: str | None = None) -> None:
        self.handshakes[outcome] += 1
        if outcome != "ok" and address is not None and self.on_refused is not None:
            self.on_refused(outcome, address)

    async def serve(
        self, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        host, port = parse_hostport(self.listen)
        listeners = await trio.open_tcp_listeners(port, host=host or None)
        self.bound = [_format(listener.socket.getsockname()) for listener in listeners]
        log.info("listening for peers", extra={"addresses": self.bound})
        task_status.started(self.bound)
        await trio.serve_listeners(self._handle, listeners)

    def register(
        self,
        service: str,
        handler: SessionHandler,
        *,
        session_timeout_s: float | None = SESSION_TIMEOUT_S,
    ) -> None:
        """Serve sessions opened for ``service`` with ``handler(peer, stream, body)``.

        ``session_timeout_s`` bounds the whole session; ``None`` leaves the bound to
        the handler (a pipeline session lasts as long as its generation and enforces
        its own idle timeout).
        """
        self._handlers[service] = (handler, session_timeout_s)

    async def _handle(self, stream: trio.SocketStream) -> None:
        address = _peer_address(stream)
        try:
            with trio.fail_after(self.timeout_s):
                peer, secure, joined = await self._accept(stream)
            self._count("ok")
            log.info(
                "authenticated peer",
                extra={
                    "peer_node_id": peer.node_id,
                    "peer_serial": _serial(peer),
                    "peer_address": address,
                },
            )
            if not joined:
                await self._serve_session(peer, secure, address)
            await secure.aclose()
        except trio.TooSlowError:
            self._count("timeout", address)
            log.warning(
                "handshake timed out", extra={"peer_address": address, "timeout_s": self.timeout_s}
            )
        except CONNECTION_ERRORS as exc:
            reason = exc.reason if isinstance(exc, HandshakeFailed) else type(exc).__name__
            self._count(reason, address)
            log.warning(
                "refused connection",
                extra={"peer_address": address, "reason": reason, "detail": str(exc)},
            )
        except Exception:
            self._count("internal_error")
            log.exception("connection handler failed", extra={"peer_address": address})
        finally:
            with trio.CancelScope(shield=True):
                await _close_gracefully(stream)

    async def _accept(
        self, stream: trio.SocketStream
    ) -> tuple[AuthenticatedPeer, SecureStream, bool]:
        policy = self._policy()
        if policy is None:
            raise HandshakeFailed("not_member", "this node has not joined a cluster yet")
        secure, payload, h = await noise_handshake(
            stream, self.creds, initiator=False, await_auth=False
        )
        peer = await respond(
            secure, payload, h, self.creds, policy, self._admitter(), auth_pending=True
        )
        return peer, secure, payload.certificate is None

    async def _serve_session(
        self, peer: AuthenticatedPeer, secure: SecureStream, address: str
    ) -> None:
        """Read the service the initiator asked for and hand the stream to its handler."""
        with trio.fail_after(SESSION_TIMEOUT_S):
            frame = await secure.receive_frame()
        if isinstance(frame, EndOfStream):
            return  # a greeting
        if not isinstance(frame, ControlFrame):
            raise RemoteProtocolError(f"expected a session open, got {type(frame).__name__}")
        opened = decode_session_open(frame.payload)
        registered = self._handlers.get(opened.service)
        if registered is None:
            self._count("unknown_service")
            log.warning(
                "unknown service", extra={"peer_address": address, "service": opened.service}
            )
            return
        handler, timeout_s = registered
        with trio.fail_after(timeout_s if timeout_s is not None else math.inf):
            await handler(peer, secure, opened.body)

    async def connect(self, address: str) -> AuthenticatedPeer:
        """Greet ``address`` (HOST:PORT): authenticate both ways, then close."""
        async with self.open_session(address, SERVICE_HELLO) as (peer, _secure):
            pass
        log.info(
            "authenticated peer",
            extra={
                "peer_node_id": peer.node_id,
                "peer_serial": _serial(peer),
                "peer_address": address,
            },
        )
        return peer

    @contextlib.asynccontextmanager
    async def open_session(
        self, address: str, service: str, body: bytes = b""
    ) -> AsyncIterator[tuple[AuthenticatedPeer, SecureStream]]:
        """An authenticated session to ``address`` for ``service`` (a greeting for hello)."""
        policy = self._policy()
        if policy is None:
            raise HandshakeFailed("not_member", "this node has not joined a cluster yet")
        host, port = parse_hostport(address)
        with trio.fail_after(self.timeout_s):
            stream = await trio.open_tcp_stream(host, port)
        try:
            with trio.fail_after(self.timeout_s):
                secure, payload, h = await noise_handshake(
                    stream, self.creds, initiator=True, await_auth=False
                )
                peer = await exchange_verdicts(
                    secure, payload, h, self.creds, policy, auth_pending=True
                )
                if service != SERVICE_HELLO:
                    await secure.send_control(encode_session_open(service, body))
            self._count("ok")
            yield peer, secure
            await secure.aclose()
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()


async def join_via(
    address: str, creds: Credentials, token: str, node_name: str, timeout_s: float
) -> Admission:
    """Ask the admin at ``address`` to admit us with ``token``."""
    host, port = parse_hostport(address)
    with trio.fail_after(timeout_s):
        stream = await trio.open_tcp_stream(host, port)
        try:
            secure, payload, h = await noise_handshake(stream, creds, initiator=True)
            admission = await request_admission(
                secure, payload, h, creds, token, node_name, wall_clock
            )
            await secure.aclose()
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()
    return admission


async def _close_gracefully(stream: trio.SocketStream) -> None:
    """Half-close, drain briefly, then close.

    Closing a TCP socket with unread input makes the kernel send a reset, which can
    destroy a Refusal we just sent before the peer reads it.  So we send FIN first and
    read (and discard) what the peer still sends, for at most ``CLOSE_LINGER_S``.
    """
    with (
        trio.move_on_after(CLOSE_LINGER_S),
        contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError),
    ):
        await stream.send_eof()
        while await stream.receive_some(CLOSE_DRAIN_BYTES):
            pass
    await stream.aclose()


def _serial(peer: AuthenticatedPeer) -> int | None:
    return peer.certificate.serial if peer.certificate is not None else None


def _format(sockname: Any) -> str:
    host, port = sockname[0], sockname[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _peer_address(stream: trio.SocketStream) -> str:
    try:
        return _format(stream.socket.getpeername())
    except OSError:
        return "?"
