"""A seeded fake network and a discrete-event driver for many membership cores.

Theory of operation
-------------------
Like memberlist's ``mock_transport.go`` this ships with the library: tests and
``simulations/membership_sim.py`` drive real :class:`Membership` cores with it, no
sockets, no clocks, no threads.

:class:`FakeNetwork` decides the fate of each message from one injected
``random.Random`` (the pattern of trio's ``test_handshake_over_terrible_network``):

* datagrams (``reliable=False``) are dropped with probability ``loss``, duplicated
  with probability ``duplicate``, and delayed uniformly in
  ``[latency_s_min, latency_s_max]`` (so they also arrive out of order);
* stream messages (``reliable=True``) are never lost or duplicated, only delayed by
  ``stream_latency_s``, as over TCP;
* both are dropped if the link is cut (:meth:`FakeNetwork.cut`, one direction) or the
  endpoints sit in different partition groups (:meth:`FakeNetwork.partition`).

:class:`SimCluster` owns the event heap: each core is ticked exactly at its own
``next_deadline_s()``, each message is delivered at its arrival time, and after every
input the core's outbox is routed and its events are logged with the time.  A crashed
node simply stops receiving and ticking.  Everything derives from one seed.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from random import Random

from protocol.errors import RemoteProtocolError
from protocol.membership.codec import DATAGRAM_PLAINTEXT_BYTES_MAX
from protocol.membership.core import Membership
from protocol.membership.events import MembershipEvent, Outgoing
from protocol.membership.record import MemberRecord
from protocol.membership.state import MemberState
from protocol.membership.timing import MembershipTiming

SIM_PORT = 7733
"""Every simulated node listens on this port of its own fake host."""
EVENTS_LOGGED_MAX = 5_000_000
"""Membership events a cluster keeps for inspection; beyond that they are counted only."""


@dataclass(frozen=True, kw_only=True, slots=True)
class NetworkConditions:
    """How badly the fake network behaves."""

    loss: float = 0.0
    """Probability that a datagram is dropped."""
    duplicate: float = 0.0
    """Probability that a delivered datagram arrives twice."""
    latency_s_min: float = 0.0005
    """Shortest one-way datagram delay."""
    latency_s_max: float = 0.005
    """Longest one-way datagram delay."""
    stream_latency_s: float = 0.01
    """One-way delay of a stream message (connection set-up included)."""

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        if not 0.0 <= self.latency_s_min <= self.latency_s_max:
            raise ValueError("need 0 <= latency_s_min <= latency_s_max")


@dataclass(slots=True)
class NetworkCounters:
    datagrams_sent: int = 0
    datagrams_dropped: int = 0
    datagrams_duplicated: int = 0
    datagrams_oversized: int = 0
    datagram_bytes_max: int = 0
    stream_messages_sent: int = 0
    bytes_sent: dict[str, int] = field(default_factory=dict)
    messages_sent: dict[str, int] = field(default_factory=dict)


class FakeNetwork:
    """Seeded lossy, duplicating, reordering network with cuts and partitions."""

    def __init__(self, rng: Random, conditions: NetworkConditions | None = None) -> None:
        self._rng = rng
        self.conditions = conditions or NetworkConditions()
        self._cut: set[tuple[str, str]] = set()
        self._group: dict[str, int] = {}
        self.counters = NetworkCounters()

    def cut(self, src: str, dst: str) -> None:
        """Drop everything from ``src`` to ``dst`` (one direction)."""
        self._cut.add((src, dst))

    def restore(self, src: str, dst: str) -> None:
        self._cut.discard((src, dst))

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        """Split the network: addresses in different groups cannot reach each other.

        Addresses in no group stay in a group of their own ("the rest").
        """
        self._group = {addr: index for index, group in enumerate(groups) for addr in group}

    def heal(self) -> None:
        """Remove every partition and cut."""
        self._group = {}
        self._cut = set()

    def reachable(self, src: str, dst: str) -> bool:
        if (src, dst) in self._cut:
            return False
        return self._group.get(src, -1) == self._group.get(dst, -1)

    def route(self, src: str, outgoing: Outgoing) -> list[float]:
        """Delays after which copies of ``outgoing`` arrive; empty if it is lost."""
        counters = self.counters
        size = outgoing.size
        counters.bytes_sent[src] = counters.bytes_sent.get(src, 0) + size
        counters.messages_sent[src] = counters.messages_sent.get(src, 0) + 1
        reachable = self.reachable(src, outgoing.addr)
        if outgoing.reliable:
            counters.stream_messages_sent += 1
            return [self.conditions.stream_latency_s] if reachable else []
        counters.datagrams_sent += 1
        counters.datagram_bytes_max = max(counters.datagram_bytes_max, size)
        if size > DATAGRAM_PLAINTEXT_BYTES_MAX:
            counters.datagrams_oversized += 1
        rng, conditions = self._rng, self.conditions
        if not reachable or rng.random() < conditions.loss:
            counters.datagrams_dropped += 1
            return []
        copies = 2 if rng.random() < conditions.duplicate else 1
        counters.datagrams_duplicated += copies - 1
        low_s, high_s = conditions.latency_s_min, conditions.latency_s_max
        # rng.uniform(low_s, high_s), spelt out: the same numbers without a Python-level
        # call per datagram (this runs for millions of them in a large simulation).
        return [low_s + (high_s - low_s) * rng.random() for _ in range(copies)]


def sim_address(node_id: str) -> str:
    """The fake ``host:port`` of a simulated node."""
    return f"{node_id}:{SIM_PORT}"


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    at_s: float
    observer: str
    event: MembershipEvent


_TICK = 0
_DELIVER = 1
_DELIVER_STREAM = 2


class SimCluster:
    """Many membership cores on one discrete-event loop over a :class:`FakeNetwork`."""

    def __init__(
        self,
        *,
        seed: int,
        timing: MembershipTiming,
        conditions: NetworkConditions | None = None,
        make_record: Callable[[str], MemberRecord] | None = None,
        log_events: bool = True,
    ) -> None:
        self.seed = seed
        self.timing = timing
        self._rng = Random(seed)
        self.network = FakeNetwork(Random(self._rng.getrandbits(64)), conditions)
        self._make_record = make_record or _default_record
        self.nodes: dict[str, Membership] = {}
        self.addr_to_id: dict[str, str] = {}
        self.crashed: set[str] = set()
        self.now = 0.0
        self.events: list[LoggedEvent] = []
        self.events_unlogged = 0
        self.protocol_errors = 0
        self._heap: list[tuple[float, int, int, str, str, bytes]] = []
        self._seq = 0
        self._tick_at: dict[str, float] = {}
        self.log_events = log_events
        """Keep events in :attr:`events` (tests); a large simulation uses :attr:`on_event`."""
        self.on_event: Callable[[LoggedEvent], None] | None = None

    # ----------------------------------------------------------------- control

    def add_node(self, node_id: str, seeds: Iterable[str] = ()) -> Membership:
        """Start a node now and join it through the seed node ids ``seeds``."""
        core = Membership(
            self._make_record(node_id), self.timing, Random(self._rng.getrandbits(64))
        )
        self.nodes[node_id] = core
        self.addr_to_id[sim_address(node_id)] = node_id
        core.join([sim_address(seed) for seed in seeds], self.now)
        self._after_input(node_id)
        return core

    def act(self, node_id: str, action: Callable[[Membership, float], object]) -> None:
        """Call ``action(core, now)`` on a node (leave, update_local...) and route its output."""
        action(self.nodes[node_id], self.now)
        self._after_input(node_id)

    def deliver(self, node_id: str, sender_addr: str, data: bytes) -> None:
        """Hand ``data`` to a node now, as if ``sender_addr`` had sent it."""
        self._push(self.now, _DELIVER, node_id, sender_addr, data)

    def crash(self, node_id: str) -> None:
        """Stop a node abruptly: it neither receives nor ticks any more."""
        self.crashed.add(node_id)

    def live_ids(self) -> list[str]:
        return [node_id for node_id in self.nodes if node_id not in self.crashed]

    def run_until(self, end_s: float, stop: Callable[[], bool] | None = None) -> bool:
        """Process events up to ``end_s``; return True early once ``stop()`` holds."""
        while self._heap and self._heap[0][0] <= end_s:
            at_s, _, kind, node_id, sender, data = heapq.heappop(self._heap)
            self.now = at_s
            if node_id in self.crashed:
                continue
            core = self.nodes[node_id]
            if kind == _TICK:
                if self._tick_at.get(node_id) != at_s:
                    continue  # superseded by an earlier deadline
                self._tick_at.pop(node_id)
                core.tick(at_s)
                if core.next_deadline_s() <= at_s:
                    # A core must consume what is due, or every driver would spin.
                    raise RuntimeError(f"{node_id} left a deadline due after tick({at_s})")
            else:
                try:
                    core.receive(sender, data, at_s, reliable=kind == _DELIVER_STREAM)
                except RemoteProtocolError:
                    self.protocol_errors += 1
            self._after_input(node_id)
            if stop is not None and stop():
                return True
        self.now = max(self.now, end_s)
        return stop is not None and stop()

    def run_for(self, duration_s: float, stop: Callable[[], bool] | None = None) -> bool:
        return self.run_until(self.now + duration_s, stop)

    # ------------------------------------------------------------- observation

    def view(self, observer: str) -> dict[str, MemberState]:
        """What ``observer`` believes about every member."""
        return {m.record.node_id: m.state for m in self.nodes[observer].members()}

    def converged(self) -> bool:
        """Every live node sees every live node alive and every crashed one not alive."""
        live = self.live_ids()
        for observer in live:
            view = self.view(observer)
            for node_id in live:
                if view.get(node_id) is not MemberState.ALIVE:
                    return False
            for node_id in self.crashed:
                if view.get(node_id) in (MemberState.ALIVE, MemberState.SUSPECT):
                    return False
        return True

    def events_of(self, kind: type, *, about: str | None = None) -> list[LoggedEvent]:
        return [
            e
            for e in self.events
            if isinstance(e.event, kind) and (about is None or _subject(e.event) == about)
        ]

    # ---------------------------------------------------------------- plumbing

    def _after_input(self, node_id: str) -> None:
        core = self.nodes[node_id]
        src = sim_address(node_id)
        for outgoing in core.outbox():
            for delay_s in self.network.route(src, outgoing):
                dst = self.addr_to_id.get(outgoing.addr)
                if dst is not None:
                    kind = _DELIVER_STREAM if outgoing.reliable else _DELIVER
                    self._push(self.now + delay_s, kind, dst, src, outgoing.message)
        for event in core.events():
            logged = LoggedEvent(self.now, node_id, event)
            if self.log_events and len(self.events) < EVENTS_LOGGED_MAX:
                self.events.append(logged)
            else:
                self.events_unlogged += 1
            if self.on_event is not None:
                self.on_event(logged)
        deadline_s = max(self.now, core.next_deadline_s())
        if not math.isfinite(deadline_s):
            return
        scheduled = self._tick_at.get(node_id)
        if scheduled is None or deadline_s < scheduled:
            self._tick_at[node_id] = deadline_s
            self._push(deadline_s, _TICK, node_id, "", b"")

    def _push(self, at_s: float, kind: int, node_id: str, sender: str, data: bytes) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at_s, self._seq, kind, node_id, sender, data))


def _subject(event: MembershipEvent) -> str:
    record = getattr(event, "record", None)
    if isinstance(record, MemberRecord):
        return record.node_id
    node_id: str = getattr(event, "node_id", "")
    return node_id


def _default_record(node_id: str) -> MemberRecord:
    return MemberRecord(node_id=node_id, addresses=(sim_address(node_id),))
