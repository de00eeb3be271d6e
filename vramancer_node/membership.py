"""The membership service: the SWIM/Lifeguard core driven over UDP and secure sessions.

Theory of operation
-------------------
:class:`protocol.membership.Membership` decides everything; this service only
moves its bytes and its clock (``trio.current_time()``):

* datagrams (probes, acks, gossip) go out sealed with the cluster gossip keyring
  (:mod:`crypto.gossip`) on a UDP socket bound to the node's peer port;
* reliable messages (push-pull, oversized compounds, the fallback ping of a probe
  that got no datagram ack) go over an authenticated
  secure session with service ``gossip``: the initiator sends
  ``SessionOpen{body=<its advertised address>}`` then the message as a BULK frame;
  the responder feeds it to its core and sends back, on the same stream, every
  reliable reply addressed to the initiator (the push-pull answer), then
  END_OF_STREAM — memberlist's push-pull over one TCP connection;
* a timer task sleeps until ``next_deadline_s()`` (or until an input or a local
  change may have moved it nearer: the core skips gossip rounds while it has nothing
  to gossip), then ticks the core.

Both ways of moving bytes sit behind a small boundary so tests can swap the network
for a seeded fake one (``tests/node/fakenet.py``), as memberlist's
``mock_transport.go`` does:

* :class:`DatagramTransport` (``sendto`` / ``recvfrom`` of sealed datagrams); the
  default :class:`UdpTransport` is the UDP socket bound to ``bind``;
* :class:`ReliableCarrier` (``exchange`` a message for the peer's replies, and
  ``serve`` the exchanges peers open); the default :class:`PeerSessionCarrier` is
  the secure-session protocol above, over :class:`~vramancer_node.peering.PeerService`.

Error handling
--------------
A datagram that no key opens, or that the core rejects as malformed, is dropped
and counted in :attr:`MembershipService.dropped`; a failed session is logged and
counted in :attr:`MembershipService.sessions`.  A carrier reports a failed exchange
as :class:`ReliableExchangeFailed` (transport trouble) or ``RemoteProtocolError``
(the peer misbehaved).  Nothing a peer sends can stop the service.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import msgpack
import trio

from crypto.gossip import DATAGRAM_BYTES_MAX, GossipSealError, Keyring
from crypto.noise.errors import NoiseError
from protocol.errors import RemoteProtocolError
from protocol.frames import BulkFrame, EndOfStream
from protocol.membership import (
    MemberAlive,
    MemberDead,
    MemberJoined,
    MemberLeft,
    MemberRecord,
    Membership,
    MembershipEvent,
    MembershipTiming,
    MemberSuspected,
    MemberUpdated,
    Outgoing,
)
from protocol.session import SERVICE_GOSSIP
from vramancer_node.config import parse_hostport
from vramancer_node.logs import get_logger
from vramancer_node.metrics.histogram import Histogram
from vramancer_node.net.handshake import AuthenticatedPeer, HandshakeFailed
from vramancer_node.net.securestream import SecureStream
from vramancer_node.peering import PeerService

log = get_logger("membership")

BULK_KIND_GOSSIP = 1
"""BULK frame kind of a membership message on a gossip session."""
GOSSIP_MESSAGE_BYTES_MAX = 24 * 1024 * 1024
PROBE_RTT_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Probe round trips: loopback (0.5 ms) to a struggling WAN link (1 s)."""
RELIABLE_SENDS_MAX = 32
"""Concurrent reliable sends; more wait (a bound on sessions opened by gossip)."""
RELIABLE_REPLIES_MAX = 64
"""Replies one exchange may bring back; a push-pull answer is one message."""
_EVENT_NAMES: dict[type, str] = {
    MemberJoined: "joined",
    MemberSuspected: "suspected",
    MemberDead: "dead",
    MemberAlive: "alive",
    MemberLeft: "left",
    MemberUpdated: "updated",
}
"""The ``member_events`` key of each event type (a bounded set of metric labels)."""


def _addr_tuple(address: str) -> tuple[str, int]:
    host, port = parse_hostport(address)
    return host, port


def _format_addr(addr: Any) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- the datagram boundary ------------------------------------------------------


class DatagramTransport(Protocol):
    """Moves sealed datagrams; addresses are ``HOST:PORT`` strings."""

    async def sendto(self, data: bytes, addr: str) -> None:
        """Send one datagram; may raise ``OSError`` or ``ValueError`` (bad address)."""
        ...

    async def recvfrom(self) -> tuple[bytes, str]:
        """Wait for the next datagram and its sender's address."""
        ...


class UdpTransport:
    """The real transport: one UDP socket (open it with :meth:`bound`)."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self._sock = sock

    @classmethod
    @contextlib.asynccontextmanager
    async def bound(cls, bind: str) -> AsyncIterator[UdpTransport]:
        """A transport on a UDP socket bound to ``bind``, closed on exit."""
        host, port = parse_hostport(bind)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = trio.socket.socket(family, socket.SOCK_DGRAM)
        with sock:
            await sock.bind((host or "0.0.0.0", port))
            yield cls(sock)

    async def sendto(self, data: bytes, addr: str) -> None:
        await self._sock.sendto(data, _addr_tuple(addr))

    async def recvfrom(self) -> tuple[bytes, str]:
        data, addr = await self._sock.recvfrom(DATAGRAM_BYTES_MAX + 1)
        return data, _format_addr(addr)


# -- the reliable boundary ------------------------------------------------------


class ReliableExchangeFailed(Exception):
    """A reliable exchange did not complete: unreachable, refused, timed out, broken."""


ReliableResponder = Callable[[list[bytes]], Awaitable[None]]
"""Sends the replies of a served exchange back to its initiator, then ends it."""
ReliableHandler = Callable[[str, bytes, ReliableResponder], Awaitable[None]]
"""Serves one exchange: ``handler(sender_address, message, respond)``."""


class ReliableCarrier(Protocol):
    """Carries reliable membership messages (push-pull, oversized compounds)."""

    async def exchange(self, addr: str, message: bytes) -> list[bytes]:
        """Deliver ``message`` to ``addr`` and return its replies, in order.

        Raises :class:`ReliableExchangeFailed` or ``RemoteProtocolError``.
        """
        ...

    def serve(self, handler: ReliableHandler) -> None:
        """Hand every exchange a peer opens to ``handler``."""
        ...


def _gossip_message(frame: object) -> bytes:
    if not isinstance(frame, BulkFrame) or frame.kind != BULK_KIND_GOSSIP:
        raise RemoteProtocolError(f"expected a gossip BULK frame, got {type(frame).__name__}")
    if len(frame.body) > GOSSIP_MESSAGE_BYTES_MAX:
        raise RemoteProtocolError("gossip message too large")
    return bytes(frame.body)


class PeerSessionCarrier:
    """The real carrier: one secure session of service ``gossip`` per exchange."""

    def __init__(self, peers: PeerService, local_address: Callable[[], str]) -> None:
        self.peers = peers
        self._local_address = local_address

    async def exchange(self, addr: str, message: bytes) -> list[bytes]:
        body = msgpack.packb(self._local_address())
        replies: list[bytes] = []
        try:
            async with self.peers.open_session(addr, SERVICE_GOSSIP, body) as (_peer, secure):
                await secure.send_bulk(BULK_KIND_GOSSIP, b"", message)
                await secure.send_eof()
                while True:
                    frame = await secure.receive_frame()
                    if isinstance(frame, EndOfStream):
                        return replies
                    if len(replies) >= RELIABLE_REPLIES_MAX:
                        raise RemoteProtocolError(f"more than {RELIABLE_REPLIES_MAX} replies")
                    replies.append(_gossip_message(frame))
        except (
            HandshakeFailed,
            NoiseError,
            OSError,
            trio.TooSlowError,
            trio.BrokenResourceError,
            trio.ClosedResourceError,
        ) as exc:
            raise ReliableExchangeFailed(f"{type(exc).__name__}: {exc}") from exc

    def serve(self, handler: ReliableHandler) -> None:
        async def serve_session(peer: AuthenticatedPeer, secure: SecureStream, body: bytes) -> None:
            try:
                sender = msgpack.unpackb(body)
                if not isinstance(sender, str):
                    raise ValueError("not a string")
                parse_hostport(sender)
            except (ValueError, msgpack.UnpackException) as exc:
                raise RemoteProtocolError(f"gossip session: bad sender address: {exc}") from exc
            message = _gossip_message(await secure.receive_frame())

            async def respond(replies: list[bytes]) -> None:
                for reply in replies:
                    await secure.send_bulk(BULK_KIND_GOSSIP, b"", reply)
                await secure.send_eof()

            await handler(sender, message, respond)

        self.peers.register(SERVICE_GOSSIP, serve_session)


# -- the service ----------------------------------------------------------------


class MembershipService:
    """Runs one node's membership core on the network.

    ``transport`` and ``carrier`` default to the real network: a UDP socket bound to
    ``bind`` and secure sessions over ``peers``.  Pass both to run without sockets
    (``peers`` may then be omitted).
    """

    def __init__(
        self,
        *,
        local: MemberRecord,
        timing: MembershipTiming,
        keyring: Keyring,
        peers: PeerService | None = None,
        bind: str,
        seeds: list[str],
        rng: random.Random | None = None,
        transport: DatagramTransport | None = None,
        carrier: ReliableCarrier | None = None,
    ) -> None:
        if carrier is None and peers is None:
            raise ValueError("MembershipService needs peers or a carrier")
        self.core = Membership(local, timing, rng or random.Random())
        self.keyring = keyring
        self.peers = peers
        self.bind = bind
        self.seeds = list(seeds)
        self.dropped: collections.Counter[str] = collections.Counter()
        self.sessions: collections.Counter[str] = collections.Counter()
        self.traffic: collections.Counter[str] = collections.Counter()
        """Bytes and messages by direction and transport (``udp_sent_bytes``,
        ``stream_received``...), for metrics."""
        self.member_events: collections.Counter[str] = collections.Counter()
        """Membership events about others by kind (``suspected``, ``dead``...)."""
        self.probe_rtt = Histogram(PROBE_RTT_BUCKETS_S)
        """Every probe round trip measured (an ack straight from the target), seconds."""
        self._wake = trio.Event()
        self._reliable_limit = trio.CapacityLimiter(RELIABLE_SENDS_MAX)
        self._given_transport = transport
        self._transport: DatagramTransport | None = None
        if carrier is None:
            assert peers is not None
            carrier = PeerSessionCarrier(peers, lambda: self.advertised)
        self._carrier = carrier
        self._nursery: trio.Nursery | None = None

    @property
    def advertised(self) -> str:
        return self.core.local.addresses[0]

    # -- lifecycle ------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with self._open_transport() as transport:
            self._transport = transport
            self._carrier.serve(self._serve_reliable)
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._receive_loop)
                nursery.start_soon(self._timer_loop)
                if self.seeds:
                    self.join(self.seeds)
                log.info(
                    "membership running",
                    extra={"advertised": self.advertised, "seeds": self.seeds},
                )
                task_status.started()

    @contextlib.asynccontextmanager
    async def _open_transport(self) -> AsyncIterator[DatagramTransport]:
        if self._given_transport is not None:
            yield self._given_transport  # its owner closes it
        else:
            async with UdpTransport.bound(self.bind) as transport:
                yield transport

    def join(self, addresses: list[str]) -> None:
        """Contact ``addresses`` (push-pull) to join or merge with their view."""
        fresh = [a for a in addresses if a != self.advertised]
        if fresh:
            self.core.join(fresh, trio.current_time())
            self._wake.set()

    def update_local(self, **changes: Any) -> None:
        self.core.update_local(now=trio.current_time(), **changes)
        self._wake.set()

    async def leave(self) -> None:
        """Tell the cluster we are leaving, and give the message a moment to go out."""
        self.core.leave(trio.current_time())
        await self._flush()

    # -- loops ----------------------------------------------------------------

    async def _receive_loop(self) -> None:
        assert self._transport is not None
        while True:
            data, sender = await self._transport.recvfrom()
            self._count_traffic("udp_received", len(data))
            try:
                plaintext = self.keyring.open(data)
            except GossipSealError:
                self.dropped["seal"] += 1
                continue
            try:
                self.core.receive(sender, plaintext, trio.current_time())
            except RemoteProtocolError as exc:
                self.dropped["malformed"] += 1
                log.debug("dropped gossip datagram", extra={"from": sender, "detail": str(exc)})
                continue
            self._wake.set()  # the input may have queued gossip: a nearer deadline
            await self._flush()

    async def _timer_loop(self) -> None:
        while True:
            with trio.move_on_at(self.core.next_deadline_s()):
                await self._wake.wait()
            self._wake = trio.Event()
            self.core.tick(trio.current_time())
            await self._flush()

    async def _flush(self) -> None:
        await self._dispatch(self.core.outbox())

    async def _dispatch(self, outgoing: list[Outgoing]) -> None:
        assert self._transport is not None and self._nursery is not None
        for out in outgoing:
            if out.reliable:
                self._nursery.start_soon(self._send_reliable, out)
                continue
            try:
                sealed = self.keyring.seal(out.message)
                await self._transport.sendto(sealed, out.addr)
                self._count_traffic("udp_sent", len(sealed))
            except (OSError, ValueError, GossipSealError) as exc:
                self.dropped["send_failed"] += 1
                log.debug("gossip send failed", extra={"to": out.addr, "detail": str(exc)})
        self._log_events(self.core.events())

    # -- reliable messages ----------------------------------------------------

    async def _send_reliable(self, out: Outgoing) -> None:
        async with self._reliable_limit:
            try:
                replies = await self._carrier.exchange(out.addr, out.message)
                self._count_traffic("stream_sent", len(out.message))
                for reply in replies:
                    self._count_traffic("stream_received", len(reply))
                    self.core.receive(out.addr, reply, trio.current_time(), reliable=True)
                self.sessions["ok"] += 1
                self._wake.set()
            except (ReliableExchangeFailed, RemoteProtocolError) as exc:
                self.sessions["failed"] += 1
                log.debug("gossip session failed", extra={"to": out.addr, "detail": str(exc)})
                return
        await self._flush()

    async def _serve_reliable(
        self, sender: str, message: bytes, respond: ReliableResponder
    ) -> None:
        """Feed one exchange to the core; answer with the replies addressed to ``sender``."""
        self._count_traffic("stream_received", len(message))
        self.core.receive(sender, message, trio.current_time(), reliable=True)
        self._wake.set()
        outgoing = self.core.outbox()
        replies = [out for out in outgoing if out.reliable and out.addr == sender]
        await respond([out.message for out in replies])
        for out in replies:
            self._count_traffic("stream_sent", len(out.message))
        self.sessions["served"] += 1
        await self._dispatch([out for out in outgoing if out not in replies])

    # -- events and views -----------------------------------------------------

    def _count_traffic(self, direction: str, size_bytes: int) -> None:
        self.traffic[direction] += 1
        self.traffic[f"{direction}_bytes"] += size_bytes

    def _log_events(self, events: list[MembershipEvent]) -> None:
        for sample_s in self.core.drain_rtt_samples():
            self.probe_rtt.observe(sample_s)
        for event in events:
            self.member_events[_EVENT_NAMES.get(type(event), "other")] += 1
            if isinstance(event, MemberJoined):
                log.info(
                    "member joined",
                    extra={"member": event.record.node_id, "address": event.record.addresses[0]},
                )
            elif isinstance(event, MemberSuspected):
                log.info(
                    "member suspected", extra={"member": event.node_id, "by": event.suspected_by}
                )
            elif isinstance(event, MemberDead):
                log.warning("member dead", extra={"member": event.node_id, "by": event.declared_by})
            elif isinstance(event, MemberAlive):
                log.info("member alive again", extra={"member": event.node_id})
            elif isinstance(event, MemberLeft):
                log.info("member left", extra={"member": event.node_id})
            elif isinstance(event, MemberUpdated):
                log.debug("member updated", extra={"member": event.record.node_id})

    # -- views for the API ----------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters for ``vramancer status``: drops by reason, sessions, health."""
        return {
            "dropped": dict(sorted(self.dropped.items())),
            "sessions": dict(sorted(self.sessions.items())),
            "health_score": self.core.health_score,
            "members": len(self.core.members()),
        }

    def peers_view(self) -> list[dict[str, Any]]:
        """Every member as ``vramancer peers`` shows it (schema vramancer.peers.v1)."""
        local = self.core.local
        rtt_ms = dict(local.rtt_ms)
        rows = []
        for member in self.core.members():
            record = member.record
            totals = [
                d.memory_total_bytes for d in record.devices if d.memory_total_bytes is not None
            ]
            frees = [d.memory_free_bytes for d in record.devices if d.memory_free_bytes is not None]
            rtt = rtt_ms.get(record.node_id)
            rows.append(
                {
                    "node_id": record.node_id,
                    "name": record.name,
                    "address": record.addresses[0],
                    "status": member.state.name.lower(),
                    "roles": list(record.roles),
                    "devices": [dataclasses.asdict(d) for d in record.devices],
                    "memory_free_bytes": sum(frees) if frees else None,
                    "memory_total_bytes": sum(totals) if totals else None,
                    "rtt_s": None if rtt is None else rtt / 1000.0,
                    "version": record.software_version,
                    "incarnation": record.incarnation,
                    "local": record.node_id == local.node_id,
                }
            )
        return sorted(rows, key=lambda row: (not row["local"], row["name"] or "", row["node_id"]))
