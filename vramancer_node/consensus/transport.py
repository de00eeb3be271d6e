"""Raft messages and forwarded requests between members, over secure sessions.

Theory of operation
-------------------
Everything travels in authenticated sessions of service ``raft``
(:data:`protocol.session.SERVICE_RAFT`) opened with
:meth:`~vramancer_node.peering.PeerService.open_session`.  The session-open body
says which of two kinds it is:

``stream``   a one-way stream of Raft messages: BULK frames of kind
             :data:`BULK_KIND_RAFT`, each one message in the codec of
             :mod:`protocol.raft.codec`.  Each node keeps one outgoing stream per
             peer (:class:`PeerLink`): a bounded queue and a task that opens the
             session on demand, sends, and closes it after
             :data:`STREAM_ROTATE_S` (below :data:`SESSION_TIMEOUT_S`) or on any
             error.  Replies come back on the peer's own stream to us.
``request``  one request, one reply (``RaftTransport.request``): a BULK frame of
             kind :data:`BULK_KIND_REQUEST` holding ``msgpack([op, payload])``, answered
             by one BULK frame holding a msgpack map, then END_OF_STREAM.  Followers use
             it to forward proposals and placement requests to the leader; the
             handler learns the requester's node id and certificate roles
             (:class:`Requester`) to authorise it.

The responder checks that every message on a stream comes *from* the authenticated
peer and is addressed to us: a member cannot speak for another one.

Error handling
--------------
Raft tolerates loss, so a message that cannot be sent (queue full, peer unknown or
unreachable) is dropped and counted in :attr:`RaftTransport.dropped`; the core
retries whatever matters.  A peer that sends garbage has its session closed
(``RemoteProtocolError``, counted) and the node keeps serving.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import trio

from crypto.noise.errors import NoiseError
from protocol.errors import RemoteProtocolError
from protocol.frames import BulkFrame, EndOfStream
from protocol.raft import Message, decode, encode
from protocol.raft.codec import MESSAGE_BYTES_MAX
from protocol.session import SERVICE_RAFT
from vramancer_node.logs import get_logger
from vramancer_node.net.handshake import AuthenticatedPeer, HandshakeFailed
from vramancer_node.net.securestream import SecureStream
from vramancer_node.peering import PeerService

log = get_logger("consensus.transport")

BULK_KIND_RAFT = 3
"""BULK frame kind of one Raft message on a ``raft`` stream session."""
BULK_KIND_REQUEST = 4
"""BULK frame kind of a forwarded request and of its reply."""
SESSION_STREAM = b"stream"
SESSION_REQUEST = b"request"
STREAM_ROTATE_S = 20.0
"""An outgoing stream is closed and reopened this often (below
:data:`SESSION_TIMEOUT_S`, so a stream never dies of old age mid-message)."""
SESSION_TIMEOUT_S = 120.0
"""Longest a ``raft`` session may last on the responder: a stream is rotated well
before, a forwarded request waits at most the leader's proposal timeout."""
LINK_QUEUE_MESSAGES_MAX = 1024
"""Messages queued for one peer; more are dropped (Raft resends)."""
RETRY_PAUSE_S = 0.5
"""Pause after a failed connection before the link tries again."""
REQUEST_BYTES_MAX = 2 * 1024 * 1024
"""Largest forwarded request or reply (a command or a model config)."""

SEND_ERRORS = (
    HandshakeFailed,
    NoiseError,
    RemoteProtocolError,
    OSError,
    trio.TooSlowError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)


@dataclass(frozen=True, kw_only=True)
class Requester:
    """Who sent a forwarded request, as the handshake authenticated it."""

    node_id: str
    roles: tuple[str, ...]
    """The roles of the requester's certificate (``admin``, ``member`` ...)."""


MessageHandler = Callable[[Message], None]
RequestHandler = Callable[[Requester, str, Any], Awaitable[dict[str, Any]]]
"""``handler(requester, op, payload) -> reply map`` for a forwarded request."""
AddressBook = Callable[[str], str | None]
"""node id -> ``HOST:PORT`` where it listens (from gossip), or None if unknown."""


class RequestFailed(Exception):
    """A forwarded request did not get a reply (unreachable, refused, broken)."""


def _bulk_body(frame: object, kind: int, limit: int) -> bytes:
    if not isinstance(frame, BulkFrame) or frame.kind != kind:
        raise RemoteProtocolError(f"expected a raft BULK frame of kind {kind}")
    if len(frame.body) > limit:
        raise RemoteProtocolError(f"raft frame of {len(frame.body)} bytes is too large")
    return bytes(frame.body)


class PeerLink:
    """The outgoing message stream to one peer."""

    def __init__(self, transport: RaftTransport, peer_id: str) -> None:
        self.transport = transport
        self.peer_id = peer_id
        self.send_channel, self._receive = trio.open_memory_channel[bytes](LINK_QUEUE_MESSAGES_MAX)

    async def run(self) -> None:
        while True:
            first = await self._receive.receive()
            address = self.transport.address_of(self.peer_id)
            if address is None:
                self.transport.dropped["unknown_address"] += 1
                continue
            try:
                await self._stream(address, first)
            except SEND_ERRORS as exc:
                self.transport.dropped["send_failed"] += 1
                log.debug(
                    "raft stream failed", extra={"peer_node_id": self.peer_id, "detail": str(exc)}
                )
                await trio.sleep(RETRY_PAUSE_S)
                self._discard_queued()

    async def _stream(self, address: str, first: bytes) -> None:
        peers = self.transport.peers
        async with peers.open_session(address, SERVICE_RAFT, SESSION_STREAM) as (peer, secure):
            if peer.node_id != self.peer_id:
                raise HandshakeFailed("wrong_peer", f"{address} is {peer.node_id}")
            await secure.send_bulk(BULK_KIND_RAFT, b"", first)
            self.transport.sent_total += 1
            with trio.move_on_after(STREAM_ROTATE_S):
                async for data in self._receive:
                    await secure.send_bulk(BULK_KIND_RAFT, b"", data)
                    self.transport.sent_total += 1
            await secure.send_eof()

    def _discard_queued(self) -> None:
        while True:
            try:
                self._receive.receive_nowait()
            except trio.WouldBlock:
                return
            self.transport.dropped["send_failed"] += 1


class RaftTransport:
    """Sends Raft messages to peers and serves the ``raft`` sessions they open."""

    def __init__(self, peers: PeerService, node_id: str, address_of: AddressBook) -> None:
        self.peers = peers
        self.node_id = node_id
        self.address_of = address_of
        self.dropped: collections.Counter[str] = collections.Counter()
        self.received_total = 0
        self.sent_total = 0
        self._links: dict[str, PeerLink] = {}
        self._nursery: trio.Nursery | None = None
        self._on_message: MessageHandler | None = None
        self._on_request: RequestHandler | None = None

    async def run(
        self,
        on_message: MessageHandler,
        on_request: RequestHandler,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self._on_message, self._on_request = on_message, on_request
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.peers.register(SERVICE_RAFT, self._serve, session_timeout_s=SESSION_TIMEOUT_S)
            task_status.started()
            await trio.sleep_forever()

    def send(self, message: Message) -> None:
        """Queue ``message`` for its destination (dropped if its queue is full)."""
        if self._nursery is None:
            self.dropped["not_running"] += 1
            return
        link = self._links.get(message.to_id)
        if link is None:
            link = self._links[message.to_id] = PeerLink(self, message.to_id)
            self._nursery.start_soon(link.run)
        try:
            link.send_channel.send_nowait(encode(message))
        except trio.WouldBlock:
            self.dropped["queue_full"] += 1

    async def request(self, peer_id: str, op: str, payload: Any) -> dict[str, Any]:
        """Send one request to ``peer_id`` and return its reply map."""
        address = self.address_of(peer_id)
        if address is None:
            raise RequestFailed(f"no known address for {peer_id}")
        body = msgpack.packb([op, payload], use_bin_type=True)
        try:
            async with self.peers.open_session(address, SERVICE_RAFT, SESSION_REQUEST) as (
                peer,
                secure,
            ):
                if peer.node_id != peer_id:
                    raise RequestFailed(f"{address} is {peer.node_id}, not {peer_id}")
                await secure.send_bulk(BULK_KIND_REQUEST, b"", body)
                reply = _bulk_body(
                    await secure.receive_frame(), BULK_KIND_REQUEST, REQUEST_BYTES_MAX
                )
        except SEND_ERRORS as exc:
            raise RequestFailed(f"request to {peer_id} failed: {exc}") from exc
        try:
            document = msgpack.unpackb(reply, raw=False, strict_map_key=True)
        except (ValueError, msgpack.UnpackException) as exc:
            raise RequestFailed(f"reply from {peer_id} is not msgpack: {exc}") from exc
        if not isinstance(document, dict):
            raise RequestFailed(f"reply from {peer_id} is not a map")
        return document

    # -- serving ------------------------------------------------------------------

    async def _serve(self, peer: AuthenticatedPeer, secure: SecureStream, body: bytes) -> None:
        if body == SESSION_STREAM:
            await self._serve_stream(peer, secure)
        elif body == SESSION_REQUEST:
            await self._serve_request(peer, secure)
        else:
            raise RemoteProtocolError(f"unknown raft session kind {body[:20]!r}")

    async def _serve_stream(self, peer: AuthenticatedPeer, secure: SecureStream) -> None:
        assert self._on_message is not None
        while True:
            frame = await secure.receive_frame()
            if isinstance(frame, EndOfStream):
                return
            message = decode(_bulk_body(frame, BULK_KIND_RAFT, MESSAGE_BYTES_MAX))
            if message.from_id != peer.node_id or message.to_id != self.node_id:
                self.dropped["misaddressed"] += 1
                raise RemoteProtocolError(
                    f"{peer.node_id} sent a message from {message.from_id!r} to {message.to_id!r}"
                )
            self.received_total += 1
            try:
                self._on_message(message)
            except RemoteProtocolError:
                self.dropped["rejected"] += 1
                raise

    async def _serve_request(self, peer: AuthenticatedPeer, secure: SecureStream) -> None:
        assert self._on_request is not None
        body = _bulk_body(await secure.receive_frame(), BULK_KIND_REQUEST, REQUEST_BYTES_MAX)
        try:
            request = msgpack.unpackb(body, raw=False, use_list=False, strict_map_key=True)
        except (ValueError, msgpack.UnpackException) as exc:
            raise RemoteProtocolError(f"forwarded request is not msgpack: {exc}") from exc
        if not (isinstance(request, tuple) and len(request) == 2 and isinstance(request[0], str)):
            raise RemoteProtocolError("a forwarded request is [op, payload]")
        log.info("forwarded request", extra={"peer_node_id": peer.node_id, "op": request[0]})
        roles = peer.certificate.roles if peer.certificate is not None else ()
        requester = Requester(node_id=peer.node_id, roles=tuple(roles))
        reply = await self._on_request(requester, request[0], request[1])
        await secure.send_bulk(BULK_KIND_REQUEST, b"", msgpack.packb(reply, use_bin_type=True))
        await secure.send_eof()

    def stats(self) -> dict[str, Any]:
        return {
            "sent": self.sent_total,
            "received": self.received_total,
            "dropped": dict(sorted(self.dropped.items())),
            "links": len(self._links),
        }
