"""A seeded fake network for :class:`~vramancer_node.membership.MembershipService`.

Theory of operation
-------------------
The service moves bytes through two boundaries, a datagram transport and a reliable
carrier; :meth:`FakeNetwork.endpoint` hands out a fake of each for one address, so a
whole cluster of real services runs in one trio run under ``MockClock`` with no
sockets (trio's ``test_handshake_over_terrible_network``, memberlist's
``mock_transport.go``).

Every fault derives from one injected ``random.Random``:

* a datagram is dropped with probability ``loss``, sent twice with probability
  ``duplicate``, and each copy is delayed uniformly in
  ``[latency_s_min, latency_s_max]``, so datagrams also arrive out of order; each
  copy travels in its own task that sleeps (on the mock clock) and then puts it in
  the receiver's bounded trio memory channel;
* a reliable exchange is never lost or duplicated: it calls the receiver's handler
  directly after ``stream_latency_s``, as a TCP session would, and fails with
  :class:`ReliableExchangeFailed` if the peer is unreachable;
* :meth:`FakeNetwork.partition` puts addresses in groups that cannot talk;
  :meth:`FakeNetwork.crash` silences an address for good.  Reachability is checked
  when a datagram is sent and again when it arrives.

With trio's scheduler made deterministic (see ``tests/node/test_membership_service``)
the same seed replays the same run; :attr:`FakeNetwork.digest` fingerprints it.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from random import Random

import trio

from protocol.errors import RemoteProtocolError
from vramancer_node.membership import ReliableExchangeFailed, ReliableHandler

DATAGRAMS_QUEUED_MAX = 1024
"""Datagrams waiting per endpoint, like a socket receive buffer; more are dropped."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Conditions:
    """How badly the fake network behaves."""

    loss: float = 0.0
    """Probability that a datagram is dropped."""
    duplicate: float = 0.0
    """Probability that a datagram is sent twice."""
    latency_s_min: float = 0.0005
    """Shortest one-way datagram delay."""
    latency_s_max: float = 0.005
    """Longest one-way datagram delay."""
    stream_latency_s: float = 0.002
    """One-way delay of a reliable exchange (each way)."""


class FakeNetwork:
    """Datagrams and reliable exchanges between fake endpoints; see the module docstring."""

    def __init__(self, rng: Random, nursery: trio.Nursery, conditions: Conditions) -> None:
        self.rng = rng
        self.conditions = conditions
        self.dropped: collections.Counter[str] = collections.Counter()
        self.delivered = 0
        self.duplicated = 0
        self.exchanges: collections.Counter[str] = collections.Counter()
        self._nursery = nursery
        self._inboxes: dict[str, trio.MemorySendChannel[tuple[bytes, str]]] = {}
        self._handlers: dict[str, ReliableHandler] = {}
        self._group: dict[str, int] = {}
        self._down: set[str] = set()
        self._digest = hashlib.sha256()
        self._start_s = trio.current_time()

    @property
    def digest(self) -> str:
        """Fingerprint of every fate decided so far (time, link, outcome)."""
        return self._digest.hexdigest()

    def endpoint(self, addr: str) -> tuple[FakeTransport, FakeCarrier]:
        send, receive = trio.open_memory_channel[tuple[bytes, str]](DATAGRAMS_QUEUED_MAX)
        self._inboxes[addr] = send
        return FakeTransport(self, addr, receive), FakeCarrier(self, addr)

    # -- faults ---------------------------------------------------------------

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        """Only addresses in the same group can talk; unlisted ones form group 0."""
        self._group = {addr: index for index, group in enumerate(groups, 1) for addr in group}

    def heal(self) -> None:
        self._group = {}

    def crash(self, addr: str) -> None:
        self._down.add(addr)

    def _blocked(self, src: str, dst: str) -> str | None:
        if src in self._down or dst in self._down or dst not in self._inboxes:
            return "down"
        if self._group.get(src, 0) != self._group.get(dst, 0):
            return "partition"
        return None

    def _note(self, *fields: object) -> None:
        elapsed_us = round((trio.current_time() - self._start_s) * 1e6)  # no float noise
        self._digest.update(repr((elapsed_us, *fields)).encode())

    # -- datagrams ------------------------------------------------------------

    def send_datagram(self, src: str, dst: str, data: bytes) -> None:
        conditions = self.conditions
        blocked = self._blocked(src, dst)
        if blocked is None and self.rng.random() < conditions.loss:
            blocked = "loss"
        if blocked is not None:
            self.dropped[blocked] += 1
            self._note(src, dst, blocked)
            return
        copies = 1
        if self.rng.random() < conditions.duplicate:
            copies = 2
            self.duplicated += 1
        for _ in range(copies):
            delay_s = self.rng.uniform(conditions.latency_s_min, conditions.latency_s_max)
            self._note(src, dst, delay_s)
            self._nursery.start_soon(self._deliver_later, delay_s, src, dst, data)

    async def _deliver_later(self, delay_s: float, src: str, dst: str, data: bytes) -> None:
        await trio.sleep(delay_s)
        blocked = self._blocked(src, dst)
        if blocked is not None:
            self.dropped[blocked] += 1
            return
        try:
            self._inboxes[dst].send_nowait((data, src))
        except trio.WouldBlock:
            self.dropped["queue_full"] += 1
            return
        self.delivered += 1

    # -- reliable exchanges ---------------------------------------------------

    async def exchange(self, src: str, dst: str, message: bytes) -> list[bytes]:
        await trio.sleep(self.conditions.stream_latency_s)
        handler = self._handlers.get(dst)
        blocked = self._blocked(src, dst) or (None if handler else "refused")
        self._note(src, dst, "exchange", blocked)
        if blocked is not None or handler is None:
            self.exchanges[f"failed_{blocked}"] += 1
            raise ReliableExchangeFailed(f"{dst} unreachable from {src}: {blocked}")
        replies: list[bytes] = []

        async def respond(messages: list[bytes]) -> None:
            replies.extend(messages)
            await trio.lowlevel.checkpoint()

        try:
            await handler(src, message, respond)
        except RemoteProtocolError as exc:
            # The real peer service logs it and closes the session on the initiator.
            self.exchanges["failed_remote"] += 1
            raise ReliableExchangeFailed(f"{dst} closed the session: {exc}") from exc
        await trio.sleep(self.conditions.stream_latency_s)
        if self._blocked(dst, src) is not None:
            self.exchanges["failed_late"] += 1
            raise ReliableExchangeFailed(f"the answer from {dst} to {src} was lost")
        self.exchanges["ok"] += 1
        return replies


class FakeTransport:
    """One endpoint's datagram transport on a :class:`FakeNetwork`."""

    def __init__(
        self, network: FakeNetwork, addr: str, inbox: trio.MemoryReceiveChannel[tuple[bytes, str]]
    ) -> None:
        self._network = network
        self.addr = addr
        self._inbox = inbox

    async def sendto(self, data: bytes, addr: str) -> None:
        await trio.lowlevel.checkpoint()
        self._network.send_datagram(self.addr, addr, data)

    async def recvfrom(self) -> tuple[bytes, str]:
        return await self._inbox.receive()


class FakeCarrier:
    """One endpoint's reliable carrier on a :class:`FakeNetwork`."""

    def __init__(self, network: FakeNetwork, addr: str) -> None:
        self._network = network
        self.addr = addr

    async def exchange(self, addr: str, message: bytes) -> list[bytes]:
        return await self._network.exchange(self.addr, addr, message)

    def serve(self, handler: ReliableHandler) -> None:
        self._network._handlers[self.addr] = handler
