"""The sans-I/O SWIM + Lifeguard membership core (memberlist, without goroutines).

Theory of operation
-------------------
:class:`Membership` is driven like etcd-raft or h11: the caller feeds inputs and
drains outputs, and owns the clock, the sockets and the randomness (injected).

Inputs (each takes ``now``, seconds on a monotonic clock of the caller's choosing):

=====================================  ============================================
``receive(sender_addr, data, now)``    one datagram or stream message from a peer;
                                       malformed input raises ``RemoteProtocolError``
                                       before any state changes
``receive_message(sender_addr, m, now)``  the same, already decoded (simulations)
``tick(now)``                          run the timers below that are due
``join(addrs, now)``                   push-pull with seed addresses
``leave(now)``                         graceful leave: gossip our own LEFT
``update_local(now=..., **changes)``   publish a changed local record (version + 1)
=====================================  ============================================

Outputs: ``outbox()`` (encoded messages, datagram or stream), ``events()``
(membership changes of other members), ``members()`` (a snapshot),
``health_score`` (Lifeguard awareness) and ``next_deadline_s()`` (when to tick).

Timers, all checked by ``tick``:

=====================  =========================================  ======================
timer                  period                                     action
=====================  =========================================  ======================
probe                  probe_interval_s * (health + 1)            ping the next member
                                                                  (randomized round
                                                                  robin); ping-req after
                                                                  the scaled timeout;
                                                                  suspect at the end
gossip                 gossip_interval_s                          broadcasts to
                                                                  gossip_nodes members
push-pull              push_pull_interval_s, scaled for n > 32   full state, one member
suspicion              Lifeguard, per suspect                     declare dead
nack                   per helper probe                           nack a requester
reconnect              RECONNECT_INTERVAL_S                       push-pull a dead member,
                                                                  with probability
                                                                  dead / live (serf)
join retry             JOIN_RETRY_INTERVAL_S while alone          push-pull the seeds
publish                RTT/health changes, rate limited           bump local version
reap                   REAP_INTERVAL_S                            forget long-dead members
=====================  =========================================  ======================

In-process simulations
----------------------
The daemon only ever uses the bytes path above.  A simulation of thousands of cores
may build them with ``keep_decoded=True`` (each :class:`Outgoing` then also carries
its message object) and feed those objects to ``receive_message``, skipping the
msgpack decode that dominates its profile; and it may :meth:`Membership.warm_start`
its cores from a converged member table instead of simulating the join wave.

Every datagram is filled up to ``DATAGRAM_PLAINTEXT_BYTES_MAX`` with piggybacked
broadcasts; a message that cannot fit one datagram goes out ``reliable=True``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from random import Random
from typing import Any

from protocol.errors import LocalProtocolError
from protocol.membership.awareness import Awareness
from protocol.membership.broadcast import BroadcastQueue
from protocol.membership.codec import decode, encode_part
from protocol.membership.events import MembershipEvent, Outgoing
from protocol.membership.messages import (
    Ack,
    Alive,
    Compound,
    Dead,
    IndirectPing,
    Message,
    Nack,
    Ping,
    PushPull,
    SimpleMessage,
    Suspect,
)
from protocol.membership.outbox import BROADCAST_PART_BYTES_MAX, Outbox
from protocol.membership.probe import Prober
from protocol.membership.probe_order import ProbeOrder
from protocol.membership.record import MemberRecord, bumped
from protocol.membership.rtt import (
    HEALTH_PUBLISH_JUMP,
    RTT_PUBLISH_INTERVAL_MIN_S,
    RTT_PUBLISH_INTERVAL_S,
    RttTracker,
    publish_due,
)
from protocol.membership.state import LIVE_STATES, Member, MemberState
from protocol.membership.table import MemberTable, WarmTable
from protocol.membership.timing import MembershipTiming, push_pull_interval_scaled_s

JOIN_RETRY_INTERVAL_S = 5.0
"""While we know no other member, re-send the join push-pull to the seeds this often."""
RECONNECT_INTERVAL_S = 30.0
"""Push-pull one random dead member this often, to heal partitions (serf's default),
with probability dead / live members: the cluster as a whole tries each dead member
about once per interval.  (Every member trying every time would send N full states
to each dead member per interval; at N=10,000 that was most of the traffic.)"""
REAP_INTERVAL_S = 60.0
"""How often long-dead members are looked for and forgotten."""
PUBLISH_CHECK_INTERVAL_S = 1.0
"""How often fresh RTT and health values are compared with the published ones."""
LOCAL_FIELDS_CALLER_OWNS = frozenset(
    {
        "addresses",
        "roles",
        "software_version",
        "protocol_version",
        "devices",
        "name",
        "bandwidth_bytes_per_s",
        "drain",
    }
)
"""Fields of the local record ``update_local`` may change; the core owns the others."""


class Membership:
    """SWIM + Lifeguard membership of one node; see the module docstring."""

    def __init__(
        self,
        local: MemberRecord,
        timing: MembershipTiming,
        rng: Random,
        *,
        keep_decoded: bool = False,
    ) -> None:
        self._timing = timing
        self._rng = rng
        self._awareness = Awareness(timing.awareness_max_multiplier)
        self._broadcasts = BroadcastQueue(BROADCAST_PART_BYTES_MAX)
        self._order = ProbeOrder(rng, exclude=local.node_id)
        self._rtt = RttTracker()
        local = dataclasses.replace(local, health=self._awareness.score)
        _check_fits(local)
        self._table = MemberTable(
            local=local,
            timing=timing,
            awareness=self._awareness,
            broadcasts=self._broadcasts,
            on_added=self._order.add,
            on_forgotten=self._order.forgot,
            now=0.0,
        )
        table = self._table
        self._outbox = Outbox(
            self._broadcasts,
            lambda: table.live_count,
            timing.retransmit_mult,
            keep_decoded=keep_decoded,
        )
        self._prober = Prober(
            table=table,
            timing=timing,
            awareness=self._awareness,
            rtt=self._rtt,
            outbox=self._outbox,
            order=self._order,
            rng=rng,
        )
        self._seeds: tuple[str, ...] = ()
        self._now = -math.inf
        self._started = False
        self._next_gossip_s = self._next_push_pull_s = self._next_reconnect_s = 0.0
        self._next_join_retry_s = self._next_reap_s = self._next_publish_check_s = 0.0
        self._last_publish_s = 0.0
        self._slow_checked_s = -math.inf

    # ------------------------------------------------------------------ outputs

    @property
    def local(self) -> MemberRecord:
        """The local member's record as currently published."""
        return self._table.local

    @property
    def health_score(self) -> int:
        """Lifeguard awareness: 0 is healthy; probes are stretched by ``score + 1``."""
        return self._awareness.score

    @property
    def has_left(self) -> bool:
        return self._table.left

    @property
    def pending_broadcasts(self) -> int:
        """Broadcasts still to be gossiped; after ``leave`` wait for the farewell to go."""
        return len(self._broadcasts)

    def members(self) -> tuple[Member, ...]:
        """Every known member, the local one included, sorted by node id."""
        return self._table.snapshot()

    def member(self, node_id: str) -> Member | None:
        """What we believe about ``node_id``, or ``None`` if unknown."""
        return self._table.get(node_id)

    def outbox(self) -> list[Outgoing]:
        """Messages to send, oldest first; drains the outbox."""
        return self._outbox.drain()

    def events(self) -> list[MembershipEvent]:
        """Events about other members, oldest first; drains them."""
        return self._table.drain_events()

    def metrics(self) -> dict[str, int]:
        """Queue lengths and drop counters, for the shell's metrics."""
        states = [m.state for m in self._table.snapshot()]
        return {
            "members_alive": states.count(MemberState.ALIVE),
            "members_suspect": states.count(MemberState.SUSPECT),
            "members_dead": states.count(MemberState.DEAD),
            "members_left": states.count(MemberState.LEFT),
            "members_dropped": self._table.members_dropped,
            "broadcast_queue_length": len(self._broadcasts),
            "broadcasts_dropped": self._broadcasts.dropped,
            "broadcasts_oversized": self._broadcasts.oversized,
            "outbox_length": len(self._outbox),
            "outbox_dropped": self._outbox.dropped,
            "events_dropped": self._table.events_dropped,
            "helper_probes": self._prober.helpers_in_flight,
            "helper_probes_evicted": self._prober.helpers_evicted,
            "stream_probe_rescues": self._prober.stream_rescues,
            "refutations": self._table.refutations,
            "health_score": self._awareness.score,
        }

    def drain_rtt_samples(self) -> list[float]:
        """Probe round trips (seconds, acks straight from the target) since the last call.

        For a histogram of probe RTTs; the record publishes only the smoothed averages.
        At most ``rtt.RTT_SAMPLES_KEPT_MAX`` are kept between calls.
        """
        return self._rtt.drain_samples()

    def next_deadline_s(self) -> float:
        """When ``tick`` has work next; ``-inf`` before the first input (tick now)."""
        if not self._started:
            return -math.inf
        deadline_s = math.inf
        if len(self._broadcasts):
            # Gossip rounds without anything to send are skipped, not ticked: the next
            # round on the gossip timer's grid (the same instant a ticker would use).
            deadline_s = self._next_gossip_s
            if deadline_s < self._now:
                deadline_s = _next_period_s(deadline_s, self._timing.gossip_interval_s, self._now)
        if not self._table.left:
            # The publish check has no deadline of its own: it rides on these ticks
            # (the probe timer fires every probe interval), see _run_slow_timers.
            deadline_s = _earlier(deadline_s, self._prober.next_probe_s)
            deadline_s = _earlier(deadline_s, self._next_push_pull_s)
            deadline_s = _earlier(deadline_s, self._next_reap_s)
            deadline_s = _earlier(deadline_s, self._next_reconnect_s)
            if self._seeds and self._table.live_count == 1:
                deadline_s = _earlier(deadline_s, self._next_join_retry_s)
        suspicion_s = self._table.next_suspicion_deadline_s()
        if suspicion_s is not None and suspicion_s < deadline_s:
            deadline_s = suspicion_s
        probe_s = self._prober.next_deadline_s()
        if probe_s is not None and probe_s < deadline_s:
            deadline_s = probe_s
        return deadline_s

    # ------------------------------------------------------------------- inputs

    def receive(
        self, sender_addr: str, message: bytes, now: float, *, reliable: bool = False
    ) -> None:
        """Handle one message from ``sender_addr``; raise ``RemoteProtocolError`` if bad.

        ``reliable``: it came over the secure stream (a reply to ours, or an exchange
        the peer opened), so a ping is answered on the stream too.  Decoding happens
        first, so a malformed message changes nothing.
        """
        self.receive_message(sender_addr, decode(message), now, reliable=reliable)

    def receive_message(
        self, sender_addr: str, message: Message, now: float, *, reliable: bool = False
    ) -> None:
        """Handle one already-decoded message (in-process simulations; see above)."""
        self._advance(now)
        parts = message.messages if isinstance(message, Compound) else (message,)
        for part in parts:
            self._handle(sender_addr, part, now, reliable)

    def warm_start(self, records: Iterable[MemberRecord] | WarmTable, now: float) -> None:
        """Start as a member of an already converged cluster of ``records`` (simulations).

        Every record is taken as ALIVE without an event or a broadcast, as if the join
        wave were long over; the push-pull timer and the last publication of the RTT
        view get random phases within their scaled intervals, as in a cluster that has
        been running for a while; the RTT view in the local record seeds our averages
        (see ``RttTracker.seed``).  Call it once,
        before any other input.  A :class:`WarmTable` is shared, not copied: build one
        for the whole cluster and hand it to every core (see ``table``).  The local
        record is ours, not the table's.
        """
        if self._started:
            raise LocalProtocolError("warm_start must come before any other input")
        self._advance(now)
        warm = records if isinstance(records, WarmTable) else WarmTable(records, now)
        self._table.seed_warm(warm)
        self._rtt.seed(self._table.local.rtt_ms)  # our view was measured by us, long ago
        self._order.seed_shared(warm.ids)
        interval_s = push_pull_interval_scaled_s(
            self._timing.push_pull_interval_s, self._table.live_count
        )
        self._next_push_pull_s = now + self._rng.uniform(0, interval_s)
        # Likewise the last publication of our RTT view lies somewhere in the past, so
        # a warm-started cluster does not re-publish every record at the same instant.
        slow_s = push_pull_interval_scaled_s(RTT_PUBLISH_INTERVAL_S, self._table.live_count)
        self._last_publish_s = now - self._rng.uniform(0, slow_s)

    def tick(self, now: float) -> None:
        """Run every timer that is due at ``now``."""
        self._advance(now)
        self._prober.step(now, may_start=not self._table.left)
        # After the prober: its suspicion may have confirmed a timer into the past.
        self._table.expire_suspicions(now)
        if now >= self._next_gossip_s:
            period_s = self._timing.gossip_interval_s
            self._next_gossip_s = _next_period_s(self._next_gossip_s, period_s, now)
            self._gossip(now)
        if not self._table.left:
            self._run_slow_timers(now)

    def join(self, addrs: Iterable[str], now: float) -> None:
        """Start joining a cluster through the seed addresses ``addrs`` (push-pull)."""
        self._advance(now)
        if self._table.left:
            raise LocalProtocolError("cannot join after leaving; create a new Membership")
        self._seeds = tuple(addrs)
        self._next_join_retry_s = now + JOIN_RETRY_INTERVAL_S
        for addr in self._seeds:
            self._send_state(addr, join=True, reply=False)

    def leave(self, now: float) -> None:
        """Leave gracefully: stop probing and gossip our farewell.

        Keep ticking until ``pending_broadcasts`` is 0 (or a deadline of your choice)
        so the farewell reaches the cluster, then stop.
        """
        self._advance(now)
        self._table.leave(now)
        self._prober.stop()

    def update_local(self, *, now: float, **changes: Any) -> None:
        """Publish a changed local record, e.g. ``update_local(now=t, devices=...)``.

        Only the fields in :data:`LOCAL_FIELDS_CALLER_OWNS` may change; the version is
        bumped once per call that changes anything.
        """
        self._advance(now)
        if self._table.left:
            raise LocalProtocolError("the local member has left; its record is final")
        not_ours = sorted(set(changes) - LOCAL_FIELDS_CALLER_OWNS)
        if not_ours:
            raise LocalProtocolError(f"update_local cannot change {', '.join(not_ours)}")
        local = self._table.local
        try:
            changed = dataclasses.replace(local, **changes)
        except (ValueError, TypeError) as exc:
            raise LocalProtocolError(f"invalid local record change: {exc}") from exc
        if changed == local:
            return
        changed = dataclasses.replace(changed, version=bumped(local.version))
        _check_fits(changed)
        self._table.update_local(changed)

    # ----------------------------------------------------------------- handling

    def _advance(self, now: float) -> None:
        if now < self._now:
            raise LocalProtocolError(f"time went backwards: {now} < {self._now}")
        self._now = now
        if self._started:
            return
        self._started = True
        # Random phases keep a cluster started at once from probing in lockstep.
        self._prober.next_probe_s = now + self._rng.uniform(0, self._timing.probe_interval_s)
        self._next_gossip_s = now + self._rng.uniform(0, self._timing.gossip_interval_s)
        self._next_push_pull_s = now + self._timing.push_pull_interval_s
        self._next_reconnect_s = now + RECONNECT_INTERVAL_S
        self._next_reap_s = now + REAP_INTERVAL_S
        self._next_publish_check_s = now + PUBLISH_CHECK_INTERVAL_S
        self._last_publish_s = now

    def _handle(self, sender_addr: str, message: SimpleMessage, now: float, reliable: bool) -> None:
        table = self._table
        match message:
            case Ping():
                self._prober.on_ping(sender_addr, message, reliable=reliable)
            case IndirectPing():
                self._prober.on_indirect_ping(sender_addr, message, now)
            case Ack():
                self._prober.on_ack(sender_addr, message.seq_no, now, reliable=reliable)
            case Nack():
                self._prober.on_nack(message.seq_no)
            case Suspect():
                table.suspect(message.node_id, message.incarnation, message.from_id, now)
            case Alive():
                table.alive(message.record, now)
            case Dead():
                table.dead(message.node_id, message.incarnation, message.from_id, now)
            case PushPull():
                table.merge_push_pull(message.members, now)
                if not message.reply:
                    self._send_state(sender_addr, join=False, reply=True)

    # ------------------------------------------------------- gossip and timers

    def _gossip(self, now: float) -> None:
        """One gossip round: broadcasts to ``gossip_nodes`` random members."""
        table = self._table
        dead_window_s = self._timing.gossip_to_the_dead_s

        def gossip_to(node_id: str) -> bool:
            state = table.state_of(node_id)
            if state in LIVE_STATES:
                return True
            # The recently dead still hear gossip, so they can learn it and refute.
            return (
                state is MemberState.DEAD and now - table.state_change_s(node_id) <= dead_window_s
            )

        targets = self._order.pick(self._timing.gossip_nodes, gossip_to)
        for node_id in targets:
            record = table.record_of(node_id)
            if record is not None and not self._outbox.gossip(record.gossip_address):
                return

    def _run_slow_timers(self, now: float) -> None:
        table = self._table
        if now >= self._next_push_pull_s:
            members = table.live_count
            interval_s = push_pull_interval_scaled_s(self._timing.push_pull_interval_s, members)
            self._next_push_pull_s = now + interval_s
            self._push_pull_random(lambda n: table.state_of(n) is MemberState.ALIVE)
        if self._seeds and table.live_count == 1 and now >= self._next_join_retry_s:
            self._next_join_retry_s = now + JOIN_RETRY_INTERVAL_S
            for addr in self._seeds:
                self._send_state(addr, join=True, reply=False)
        if now >= self._next_reconnect_s:
            self._next_reconnect_s = now + RECONNECT_INTERVAL_S
            dead = table.dead_ids
            if dead and self._rng.random() < len(dead) / max(1, table.live_count):
                self._push_pull_to(dead[self._rng.randrange(len(dead))])
        if now >= self._next_publish_check_s:
            self._next_publish_check_s = now + PUBLISH_CHECK_INTERVAL_S
            self._maybe_publish(now)
        if now >= self._next_reap_s:
            self._next_reap_s = now + REAP_INTERVAL_S
            for node_id in table.reap(now):
                self._rtt.forget(node_id)

    def _push_pull_random(self, accept: Callable[[str], bool]) -> None:
        for node_id in self._order.pick(1, accept):
            self._push_pull_to(node_id)

    def _push_pull_to(self, node_id: str) -> None:
        record = self._table.record_of(node_id)
        if record is not None:
            self._send_state(record.gossip_address, join=False, reply=False)

    def _send_state(self, addr: str, *, join: bool, reply: bool) -> None:
        state = PushPull(join=join, reply=reply, members=self._table.push_pull_entries())
        self._outbox.stream(addr, state)

    def _maybe_publish(self, now: float) -> None:
        """Re-publish the local record when RTTs or health moved enough (see ``rtt``)."""
        table = self._table
        local = table.local
        since_last_publish_s = now - self._last_publish_s
        if since_last_publish_s < RTT_PUBLISH_INTERVAL_MIN_S:
            return
        slow_interval_s = push_pull_interval_scaled_s(RTT_PUBLISH_INTERVAL_S, table.live_count)
        # The slow cadence runs one slow interval after the last publication, or after
        # the last slow check that found nothing to publish: re-checking every second
        # from then on would rebuild the view every second for good (most find nothing).
        slow_due = now - max(self._last_publish_s, self._slow_checked_s) >= slow_interval_s
        health = self._awareness.score
        if (
            not slow_due
            and local.health is not None
            and abs(health - local.health) < HEALTH_PUBLISH_JUMP
            and not self._rtt.moved(local.rtt_ms)
        ):
            return  # nothing publish_due could act on before the slow cadence
        candidate = self._rtt.published_view(lambda n: table.state_of(n) in LIVE_STATES)
        if not publish_due(
            published=local.rtt_ms,
            candidate=candidate,
            published_health=local.health,
            candidate_health=health,
            since_last_publish_s=since_last_publish_s,
            slow_interval_s=slow_interval_s if slow_due else math.inf,
            published_gone=any(table.state_of(p) not in LIVE_STATES for p, _ in local.rtt_ms),
        ):
            if slow_due:
                self._slow_checked_s = now
            return
        self._last_publish_s = now
        rtt_ms = list(candidate)
        while True:
            record = dataclasses.replace(
                local,
                rtt_ms=tuple(rtt_ms),
                health=self._awareness.score,
                version=bumped(local.version),
            )
            if _fits(record) or not rtt_ms:
                break
            rtt_ms.remove(max(rtt_ms, key=lambda pair: pair[1]))  # keep the nearest peers
        if _fits(record):
            table.update_local(record)


def _earlier(a_s: float, b_s: float) -> float:
    """``min`` of two times, cheap once compiled (``next_deadline_s`` runs after every
    input of every simulated core)."""
    return b_s if b_s < a_s else a_s


def _next_period_s(deadline_s: float, period_s: float, now: float) -> float:
    """The next deadline of a periodic timer; missed periods are skipped, not replayed."""
    periods = math.floor((now - deadline_s) / period_s) + 1
    next_s = deadline_s + periods * period_s
    return next_s if next_s > now else next_s + period_s  # rounding may land on ``now``


def _fits(record: MemberRecord) -> bool:
    return len(encode_part(Alive(record=record))) <= BROADCAST_PART_BYTES_MAX


def _check_fits(record: MemberRecord) -> None:
    if not _fits(record):
        raise LocalProtocolError(
            f"the local record does not fit one gossip datagram ({BROADCAST_PART_BYTES_MAX}"
            " bytes for its ALIVE message): publish fewer devices, roles or peer values"
        )
