"""The membership service: the SWIM/Lifeguard core driven over UDP and secure sessions.

Theory of operation
-------------------
:class:`protocol.membership.Membership` decides everything; this service only
moves its bytes and its clock (``trio.current_time()``):

* datagrams (probes, acks, gossip) go out sealed with the cluster gossip keyring
  (:mod:`crypto.gossip`) on a UDP socket bound to the node's peer port;
* reliable messages (push-pull, oversized compounds) go over an authenticated
  secure session with service ``gossip``: the initiator sends
  ``SessionOpen{body=<its advertised address>}`` then the message as a BULK frame;
  the responder feeds it to its core and sends back, on the same stream, every
  reliable reply addressed to the initiator (the push-pull answer), then
  END_OF_STREAM — memberlist's push-pull over one TCP connection;
* a timer task sleeps until ``next_deadline_s()`` (or until new work arrives),
  then ticks the core.

Error handling
--------------
A datagram that no key opens, or that the core rejects as malformed, is dropped
and counted in :attr:`MembershipService.dropped`; a failed session is logged and
counted.  Nothing a peer sends can stop the service.
"""

from __future__ import annotations

import collections
import random
import socket
from typing import Any

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
from vramancer_node.net.handshake import AuthenticatedPeer, HandshakeFailed
from vramancer_node.net.securestream import SecureStream
from vramancer_node.peering import PeerService

log = get_logger("membership")

BULK_KIND_GOSSIP = 1
"""BULK frame kind of a membership message on a gossip session."""
GOSSIP_MESSAGE_BYTES_MAX = 16 * 1024 * 1024
RELIABLE_SENDS_MAX = 32
"""Concurrent reliable sends; more wait (a bound on sessions opened by gossip)."""


def _addr_tuple(address: str) -> tuple[str, int]:
    host, port = parse_hostport(address)
    return host, port


def _format_addr(addr: Any) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class MembershipService:
    """Runs one node's membership core on the network."""

    def __init__(
        self,
        *,
        local: MemberRecord,
        timing: MembershipTiming,
        keyring: Keyring,
        peers: PeerService,
        bind: str,
        seeds: list[str],
        rng: random.Random | None = None,
    ) -> None:
        self.core = Membership(local, timing, rng or random.Random())
        self.keyring = keyring
        self.peers = peers
        self.bind = bind
        self.seeds = list(seeds)
        self.dropped: collections.Counter[str] = collections.Counter()
        self.sessions: collections.Counter[str] = collections.Counter()
        self._wake = trio.Event()
        self._reliable_limit = trio.CapacityLimiter(RELIABLE_SENDS_MAX)
        self._sock: trio.socket.SocketType | None = None
        self._nursery: trio.Nursery | None = None

    @property
    def advertised(self) -> str:
        return self.core.local.addresses[0]

    # -- lifecycle ------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        host, port = parse_hostport(self.bind)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = trio.socket.socket(family, socket.SOCK_DGRAM)
        with sock:
            await sock.bind((host or "0.0.0.0", port))
            self._sock = sock
            self.peers.register(SERVICE_GOSSIP, self._serve_gossip_session)
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
        assert self._sock is not None
        while True:
            data, addr = await self._sock.recvfrom(DATAGRAM_BYTES_MAX + 1)
            try:
                plaintext = self.keyring.open(data)
            except GossipSealError:
                self.dropped["seal"] += 1
                continue
            try:
                self.core.receive(_format_addr(addr), plaintext, trio.current_time())
            except RemoteProtocolError as exc:
                self.dropped["malformed"] += 1
                log.debug(
                    "dropped gossip datagram",
                    extra={"from": _format_addr(addr), "detail": str(exc)},
                )
                continue
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
        assert self._sock is not None and self._nursery is not None
        for out in outgoing:
            if out.reliable:
                self._nursery.start_soon(self._send_reliable, out)
                continue
            try:
                await self._sock.sendto(self.keyring.seal(out.message), _addr_tuple(out.addr))
            except (OSError, ValueError, GossipSealError) as exc:
                self.dropped["send_failed"] += 1
                log.debug("gossip send failed", extra={"to": out.addr, "detail": str(exc)})
        self._log_events(self.core.events())

    # -- reliable messages over secure sessions -------------------------------

    async def _send_reliable(self, out: Outgoing) -> None:
        async with self._reliable_limit:
            try:
                body = msgpack.packb(self.advertised)
                async with self.peers.open_session(out.addr, SERVICE_GOSSIP, body) as (
                    _peer,
                    secure,
                ):
                    await secure.send_bulk(BULK_KIND_GOSSIP, b"", out.message)
                    await secure.send_eof()
                    while True:
                        frame = await secure.receive_frame()
                        if isinstance(frame, EndOfStream):
                            break
                        self._feed_stream_frame(out.addr, frame)
                self.sessions["ok"] += 1
            except (
                HandshakeFailed,
                RemoteProtocolError,
                NoiseError,
                OSError,
                trio.TooSlowError,
                trio.BrokenResourceError,
                trio.ClosedResourceError,
            ) as exc:
                self.sessions["failed"] += 1
                log.debug("gossip session failed", extra={"to": out.addr, "detail": str(exc)})
                return
        await self._flush()

    def _feed_stream_frame(self, addr: str, frame: object) -> None:
        if not isinstance(frame, BulkFrame) or frame.kind != BULK_KIND_GOSSIP:
            raise RemoteProtocolError(f"expected a gossip BULK frame, got {type(frame).__name__}")
        if len(frame.body) > GOSSIP_MESSAGE_BYTES_MAX:
            raise RemoteProtocolError("gossip message too large")
        self.core.receive(addr, bytes(frame.body), trio.current_time())

    async def _serve_gossip_session(
        self, peer: AuthenticatedPeer, secure: SecureStream, body: bytes
    ) -> None:
        try:
            sender = msgpack.unpackb(body)
            if not isinstance(sender, str):
                raise ValueError("not a string")
            parse_hostport(sender)
        except (ValueError, msgpack.UnpackException) as exc:
            raise RemoteProtocolError(f"gossip session: bad sender address: {exc}") from exc
        frame = await secure.receive_frame()
        self._feed_stream_frame(sender, frame)
        outgoing = self.core.outbox()
        replies = [out for out in outgoing if out.reliable and out.addr == sender]
        for out in replies:
            await secure.send_bulk(BULK_KIND_GOSSIP, b"", out.message)
        await secure.send_eof()
        self.sessions["served"] += 1
        await self._dispatch([out for out in outgoing if out not in replies])

    # -- events and views -----------------------------------------------------

    def _log_events(self, events: list[MembershipEvent]) -> None:
        for event in events:
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
