"""A warm-started cluster of real membership cores on one discrete-event loop.

Theory of operation
-------------------
Every node is a real :class:`protocol.membership.Membership` core built with
``keep_decoded=True`` and started with ``warm_start`` from one shared
:class:`~protocol.membership.table.WarmTable` (copy on write: memory grows with N
plus what each core changed, not N²): the cluster is already converged at t=0, so a
run measures steady-state SWIM, not the join wave.  Like the records of a cluster
that has been running for a while, every record already carries an RTT view (drawn
from the network's latency model), so the run does not open with every member
publishing its first measurements at once.  Datagrams are still encoded (their
sizes feed the traffic figures and the datagram budget check), push-pulls only
measured (``codec.encoded_size``); all are handed over as objects through
``receive_message``, which skips the msgpack decode.  Events wait in an
:class:`EventQueue`.  The network is :class:`FakeNetwork` (seeded loss, delay,
partitions); crashed nodes neither receive nor tick.  A core is ticked at its
``next_deadline_s``; a tick whose deadline was cancelled meanwhile (an ack ends the
probe timeout) is skipped, not run idle.

:class:`Observer` turns the events every core emits into the measurements:

* dissemination: from ``update_local`` on one member until
  ``ceil(0.999 * live members)`` hold that version (the origin counts);
* detection of a crash: first suspicion, first death declaration, and the time
  every member still alive holds it dead;
* false deaths: a live member declared dead, except across an active partition
  (or within the suspicion timeout after it heals), which is counted apart.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from random import Random

from protocol.membership import (
    MemberAlive,
    MemberDead,
    MemberJoined,
    MemberRecord,
    MembershipEvent,
    MembershipTiming,
    MemberSuspected,
    MemberUpdated,
)
from protocol.membership.core import Membership
from protocol.membership.messages import Message
from protocol.membership.rtt import RTT_PEERS_PUBLISHED_MAX as RTT_PEERS
from protocol.membership.table import WarmTable
from protocol.membership.testing import FakeNetwork, NetworkConditions, sim_address

_TICK = 0
_DELIVER = 1
_DELIVER_STREAM = 2

Entry = tuple[float, int, int, int, str, Message | None]
"""(time, sequence number, kind, node, sender address, message): ordered by time, then
by the order of scheduling."""


class EventQueue:
    """A calendar queue of entries, popped in (time, sequence) order like one heap.

    A heap of every pending event (~20,000 at N=10,000) costs ~15 levels of tuple
    comparisons per push and pop, mostly cache misses.  Here entries are appended to
    the bucket of their ``BUCKET_S`` time slot, and only the slot being worked through
    is a heap: a few dozen entries.  Every entry of an earlier slot precedes every
    entry of a later one, so the order is exactly that of a single heap.
    """

    BUCKET_S = 0.001

    def __init__(self) -> None:
        self._current: list[Entry] = []
        """The heap of the slot being worked through (and of anything pushed earlier)."""
        self._slot = -(2**62)
        self._buckets: dict[int, list[Entry]] = {}
        self._slots: list[int] = []
        """Heap of the slots that have a bucket."""
        self._seq = 0

    def push(self, at_s: float, kind: int, node: int, sender: str, message: Message | None) -> None:
        self._seq += 1
        entry = (at_s, self._seq, kind, node, sender, message)
        slot = math.floor(at_s / self.BUCKET_S)
        if slot <= self._slot:
            heapq.heappush(self._current, entry)
            return
        bucket = self._buckets.get(slot)
        if bucket is None:
            self._buckets[slot] = [entry]
            heapq.heappush(self._slots, slot)
        else:
            bucket.append(entry)

    def pop_until(self, end_s: float) -> Entry | None:
        """The first entry if it is due at or before ``end_s``, else ``None``."""
        current = self._current
        if not current:
            if not self._slots:
                return None
            self._slot = heapq.heappop(self._slots)
            current = self._buckets.pop(self._slot)
            heapq.heapify(current)
            self._current = current
        if current[0][0] > end_s:
            return None
        return heapq.heappop(current)


@dataclass(slots=True)
class Dissemination:
    origin: int
    version: int
    started_s: float
    needed: int
    holders: set[int] = field(default_factory=set)
    done_s: float | None = None


@dataclass(slots=True)
class Crash:
    at_s: float
    first_suspect_s: float | None = None
    first_dead_s: float | None = None
    dead_at: dict[int, float] = field(default_factory=dict)


class Observer:
    """Measurements taken from the event stream of every core."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self.disseminations: list[Dissemination] = []
        self._active: dict[int, Dissemination] = {}
        self.crashes: dict[int, Crash] = {}
        self.false_dead = 0
        self.false_suspected = 0
        self.partition_dead = 0
        self.partition_excuse_until_s = -math.inf
        self.side: dict[int, int] = {}
        # observer -> {subject: event type} for subjects the observer does not see alive
        self.not_alive: dict[int, dict[int, type]] = {}

    def start_dissemination(self, origin: int, version: int, now: float) -> None:
        live = len(self._cluster.nodes) - len(self._cluster.crashed)
        needed = math.ceil(0.999 * live)
        trial = Dissemination(origin, version, now, needed, {origin})
        self.disseminations.append(trial)
        self._active[origin] = trial

    def on_event(self, observer: int, event: MembershipEvent, now: float) -> None:
        index = self._cluster.index
        if isinstance(event, (MemberJoined, MemberUpdated)):
            subject = index[event.record.node_id]
            self.not_alive.get(observer, {}).pop(subject, None)
            trial = self._active.get(subject)
            if trial is not None and event.record.version >= trial.version:
                trial.holders.add(observer)
                if len(trial.holders) >= trial.needed:
                    trial.done_s = now - trial.started_s
                    del self._active[subject]
            return
        subject = index[event.node_id]
        if isinstance(event, MemberAlive):
            self.not_alive.get(observer, {}).pop(subject, None)
            return
        self.not_alive.setdefault(observer, {})[subject] = type(event)
        crash = self.crashes.get(subject)
        if isinstance(event, MemberSuspected):
            if crash is None:
                self.false_suspected += 1
            elif crash.first_suspect_s is None:
                crash.first_suspect_s = now - crash.at_s
        elif isinstance(event, MemberDead):
            if crash is not None:
                crash.dead_at.setdefault(observer, now)
                if crash.first_dead_s is None:
                    crash.first_dead_s = now - crash.at_s
            elif now <= self.partition_excuse_until_s and self.side.get(observer) != self.side.get(
                subject
            ):
                self.partition_dead += 1
            else:
                self.false_dead += 1

    @property
    def disseminating(self) -> bool:
        """Some update has not reached 99.9% of the live members yet."""
        return bool(self._active)

    def converged(self) -> bool:
        """Every live node sees every live node alive and every crashed one dead."""
        crashed = self._cluster.crashed
        for observer in range(len(self._cluster.nodes)):
            if observer in crashed:
                continue
            odd = self.not_alive.get(observer, {})
            if len(odd) != len(crashed) or any(s not in crashed for s in odd):
                return False
            if any(kind is MemberSuspected for kind in odd.values()):
                return False
        return True


def published_rtts(
    i: int, ids: list[str], conditions: NetworkConditions, rng: Random
) -> tuple[tuple[str, float], ...]:
    """The RTT view member ``i`` published long ago: the nearest few of the peers it had
    probed by then (``WARM_PEERS_MEASURED``), RTTs drawn from the network's latency
    model (two one-way delays), as the local record carries them."""
    sample = rng.sample(range(len(ids)), min(len(ids), WARM_PEERS_MEASURED + 1))
    low_ms, high_ms = 1000 * conditions.latency_s_min, 1000 * conditions.latency_s_max
    measured = [
        (round(rng.uniform(low_ms, high_ms) + rng.uniform(low_ms, high_ms), 2), ids[j])
        for j in sample
        if j != i
    ]
    nearest = sorted(measured)[:RTT_PEERS]
    return tuple(sorted((peer, ms) for ms, peer in nearest))


WARM_PEERS_MEASURED = 64
"""Peers a warm-started member had probed when it last published its RTT view."""


class Cluster:
    """N warm-started cores, a fake network and an event heap; all from one seed."""

    def __init__(
        self, *, members: int, seed: int, timing: MembershipTiming, conditions: NetworkConditions
    ) -> None:
        rng = Random(seed)
        self.timing = timing
        self.network = FakeNetwork(Random(rng.getrandbits(64)), conditions)
        ids = [f"n{i:05d}" for i in range(members)]
        self.addrs = [sim_address(node_id) for node_id in ids]
        self.index = {node_id: i for i, node_id in enumerate(ids)}
        self.addr_index = {addr: i for i, addr in enumerate(self.addrs)}
        records = [
            MemberRecord(
                node_id=n, addresses=(a,), health=0, rtt_ms=published_rtts(i, ids, conditions, rng)
            )
            for i, (n, a) in enumerate(zip(ids, self.addrs, strict=True))
        ]
        warm = WarmTable(records, 0.0)  # one table shared by every core (copy on write)
        self.nodes: list[Membership] = []
        for record in records:
            core = Membership(record, timing, Random(rng.getrandbits(64)), keep_decoded=True)
            core.warm_start(warm, 0.0)
            self.nodes.append(core)
        self.crashed: set[int] = set()
        self.now = 0.0
        self.protocol_errors = 0
        self.observer = Observer(self)
        self._queue = EventQueue()
        self._tick_at: list[float] = [math.inf] * members
        self._due_at: list[float] = [-math.inf] * members
        """``next_deadline_s`` of each core after its last input (only inputs move it)."""
        for i in range(members):
            self._schedule_tick(i)

    def live(self) -> list[int]:
        return [i for i in range(len(self.nodes)) if i not in self.crashed]

    def crash(self, i: int) -> None:
        self.crashed.add(i)

    def act_update(self, i: int) -> None:
        """``update_local`` on node ``i`` (a new software version) and start timing it."""
        core = self.nodes[i]
        core.update_local(now=self.now, software_version=f"sim-{core.local.version + 1}")
        self.observer.start_dissemination(i, core.local.version, self.now)
        self._after_input(i)

    def run_until(self, end_s: float) -> None:
        queue, nodes, crashed = self._queue, self.nodes, self.crashed
        tick_at, due_at = self._tick_at, self._due_at
        while True:
            entry = queue.pop_until(end_s)
            if entry is None:
                break
            at_s, _, kind, i, sender, message = entry
            if i in crashed:
                continue
            self.now = at_s
            if kind == _TICK:
                if tick_at[i] != at_s:
                    continue  # superseded by an earlier deadline
                if due_at[i] > at_s:
                    # Nothing is due any more (an ack cancelled the probe timeout this
                    # tick was for): wait for the core's real deadline instead.
                    tick_at[i] = math.inf
                    self._arm(i, due_at[i])
                    continue
                tick_at[i] = math.inf
                nodes[i].tick(at_s)
            else:
                assert message is not None
                nodes[i].receive_message(sender, message, at_s, reliable=kind == _DELIVER_STREAM)
            self._after_input(i)
        self.now = max(self.now, end_s)

    def _after_input(self, i: int) -> None:
        core = self.nodes[i]
        src = self.addrs[i]
        now = self.now
        route, addr_index, queue = self.network.route, self.addr_index, self._queue
        for outgoing in core.outbox():
            delays = route(src, outgoing)
            dst = addr_index.get(outgoing.addr)
            if dst is None:
                continue
            kind = _DELIVER_STREAM if outgoing.reliable else _DELIVER
            for delay_s in delays:
                queue.push(now + delay_s, kind, dst, src, outgoing.decoded)
        for event in core.events():
            self.observer.on_event(i, event, now)
        self._schedule_tick(i)

    def _schedule_tick(self, i: int) -> None:
        deadline_s = max(self.now, self.nodes[i].next_deadline_s())
        self._due_at[i] = deadline_s
        self._arm(i, deadline_s)

    def _arm(self, i: int, deadline_s: float) -> None:
        """Tick node ``i`` at ``deadline_s`` unless a tick comes earlier (or it is inf)."""
        if deadline_s < self._tick_at[i]:
            self._tick_at[i] = deadline_s
            self._queue.push(deadline_s, _TICK, i, "", None)
