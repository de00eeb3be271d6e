"""The SWIM failure detector with Lifeguard's nacks (memberlist probeNode).

Theory of operation
-------------------
One probe of our own runs at a time (:class:`ProbeInFlight`)::

    start --------------> direct_deadline_s -------------------> end_s
      ping the target       no ack yet: ping-req to                no ack at all:
      (to a suspect, with   indirect_checks live helpers,          suspect the target;
      the accusation, so    asking each to nack at 80% of           awareness += missed
      it can refute)        the time we still wait                  nacks (or 1 if none
                                                                    were expected)

The same buddy system works the other way round: when a member we suspect pings us,
our ack carries the accusation.  After a spell of deafness the suspect learns it is
suspected from its own next probe instead of waiting for someone's probe of it, whose
round-robin turn may come only after the suspicion timeout.
      an ack at any point: success, awareness -1, RTT sample if it came from the target

With the ping-reqs we also ping the target over the secure stream (memberlist's TCP
fallback ping, on by default there): a stream retransmits what the network drops, so
a target that is alive but behind a lossy link still answers.  A stream ack alone
does not end the probe early; at ``end_s`` it spares the target the suspicion, while
the nacks we missed still count against our own health, as memberlist does.  It never
yields an RTT sample (a stream's round trip is not a datagram's).

Both deadlines are the configured timeout and interval stretched by the Lifeguard
health multiplier at the start of the probe, as the Lifeguard paper does (memberlist
stretches only the interval).  The next probe starts at ``end_s``.

Helpers nack at :data:`NACK_TIMEOUT_FRACTION` of the time the requester still waits,
which the requester states in the ping-req.  memberlist nacks after its own probe
timeout, which with the LAN numbers lands right at the requester's deadline and
reads as a missed nack; stating the deadline keeps nacks meaningful for every preset.

We also probe *for* others: a ping-req makes us ping the target with a sequence
number of our own (:class:`HelperProbe`), relay its ack, or nack when it stays
silent.  That table is bounded (:data:`HELPER_PROBES_MAX`): a flood of ping-reqs
evicts the oldest rather than growing memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from random import Random

from protocol.membership.awareness import PROBE_FAILED_DELTA, PROBE_SUCCEEDED_DELTA, Awareness
from protocol.membership.messages import (
    SEQ_NO_MODULUS,
    Ack,
    Compound,
    IndirectPing,
    Nack,
    Ping,
    SimpleMessage,
    Suspect,
)
from protocol.membership.outbox import Outbox
from protocol.membership.probe_order import ProbeOrder
from protocol.membership.rtt import RttTracker
from protocol.membership.state import LIVE_STATES, MemberState
from protocol.membership.table import MemberTable
from protocol.membership.timing import MembershipTiming

HELPER_PROBES_MAX = 256
"""Indirect probes we run for others at once; the oldest is evicted beyond this."""
NACK_TIMEOUT_FRACTION = 0.8
"""A helper nacks after this fraction of the time the requester still waits, so the
nack arrives before the requester gives up (Lifeguard: 80% of the probe timeout)."""
MILLISECONDS_PER_SECOND = 1000.0


@dataclass(slots=True)
class ProbeInFlight:
    """Our current probe of one member."""

    seq_no: int
    target_id: str
    target_addr: str
    started_s: float
    direct_deadline_s: float
    """Probe indirectly if no ack by then (probe timeout, health-scaled)."""
    end_s: float
    """Give up and suspect the target (probe interval, health-scaled)."""
    indirect_sent: bool = False
    expected_nacks: int = 0
    nacks: int = 0
    stream_acked: bool = False
    """The target answered the fallback ping over the secure stream."""


@dataclass(slots=True)
class HelperProbe:
    """A probe we run on behalf of a requester."""

    requester_addr: str
    requester_seq_no: int
    nack_at_s: float | None
    """When to nack if the target stays silent; ``None``: no nack (unwanted or sent)."""
    expires_s: float
    """When to forget the probe; a later ack is not relayed (the requester gave up)."""


class Prober:
    """Probes members one at a time and helps others probe (see module docstring)."""

    def __init__(
        self,
        *,
        table: MemberTable,
        timing: MembershipTiming,
        awareness: Awareness,
        rtt: RttTracker,
        outbox: Outbox,
        order: ProbeOrder,
        rng: Random,
    ) -> None:
        self._table = table
        self._timing = timing
        self._awareness = awareness
        self._rtt = rtt
        self._outbox = outbox
        self._order = order
        self._rng = rng
        self._probe: ProbeInFlight | None = None
        self._helpers: dict[int, HelperProbe] = {}
        self._seq_no = rng.randrange(SEQ_NO_MODULUS)
        self.next_probe_s = 0.0
        self.helpers_evicted = 0
        self.stream_rescues = 0
        """Probes that failed over datagrams but reached the target over the stream."""

    @property
    def helpers_in_flight(self) -> int:
        return len(self._helpers)

    def next_deadline_s(self) -> float | None:
        """The earliest probe or nack deadline (the next probe start is separate)."""
        probe = self._probe
        if not self._helpers:
            if probe is None:
                return None
            return probe.end_s if probe.indirect_sent else probe.direct_deadline_s
        deadlines = [p.nack_at_s for p in self._helpers.values() if p.nack_at_s is not None]
        if probe is not None:
            deadlines.append(probe.end_s if probe.indirect_sent else probe.direct_deadline_s)
        return min(deadlines, default=None)

    def stop(self) -> None:
        """Abandon our probe (we are leaving); helping others goes on."""
        self._probe = None

    # ------------------------------------------------------------------ timers

    def step(self, now: float, *, may_start: bool) -> None:
        """Advance the probe in flight; start the next one if due and allowed."""
        self._send_due_nacks(now)
        probe = self._probe
        if probe is not None:
            if not probe.indirect_sent and probe.direct_deadline_s <= now < probe.end_s:
                self._probe_indirectly(probe, now)
            if now >= probe.end_s:
                self._probe = None
                self._probe_failed(probe, now)
        if self._probe is None and may_start and now >= self.next_probe_s:
            self._start_probe(now)

    def _start_probe(self, now: float) -> None:
        table = self._table
        interval_s = self._awareness.scale_s(self._timing.probe_interval_s)
        self.next_probe_s = now + interval_s
        target = self._order.next(
            lambda n: table.state_of(n) in LIVE_STATES, lambda n: table.state_of(n) is not None
        )
        record = None if target is None else table.record_of(target)
        if target is None or record is None:
            return
        probe = ProbeInFlight(
            seq_no=self._next_seq_no(),
            target_id=target,
            target_addr=record.gossip_address,
            started_s=now,
            direct_deadline_s=now + self._awareness.scale_s(self._timing.probe_timeout_s),
            end_s=now + interval_s,
        )
        self._probe = probe
        messages: list[SimpleMessage] = [
            Ping(seq_no=probe.seq_no, target_id=target, source_id=table.local_id)
        ]
        if table.state_of(target) is MemberState.SUSPECT:
            messages.append(
                Suspect(node_id=target, incarnation=record.incarnation, from_id=table.local_id)
            )
        self._outbox.datagram(probe.target_addr, messages)

    def _probe_indirectly(self, probe: ProbeInFlight, now: float) -> None:
        probe.indirect_sent = True
        table = self._table
        helpers = self._order.pick(
            self._timing.indirect_checks,
            lambda n: n != probe.target_id and table.state_of(n) is MemberState.ALIVE,
        )
        remaining_s = max(0.0, probe.end_s - now)
        nack_after_ms = int(NACK_TIMEOUT_FRACTION * remaining_s * MILLISECONDS_PER_SECOND)
        request = IndirectPing(
            seq_no=probe.seq_no,
            target_id=probe.target_id,
            target_addr=probe.target_addr,
            nack_after_ms=nack_after_ms,
        )
        for helper_id in helpers:
            record = table.record_of(helper_id)
            if record is not None:
                probe.expected_nacks += 1
                self._outbox.datagram(record.gossip_address, [request])
        ping = Ping(seq_no=probe.seq_no, target_id=probe.target_id, source_id=table.local_id)
        self._outbox.stream(probe.target_addr, ping)

    def _probe_failed(self, probe: ProbeInFlight, now: float) -> None:
        # Lifeguard: nacks prove we can still hear; each one missing points at us.
        if probe.expected_nacks > 0:
            missed = max(0, probe.expected_nacks - probe.nacks)
            self._awareness.apply_delta(PROBE_FAILED_DELTA * missed)
        else:
            self._awareness.apply_delta(PROBE_FAILED_DELTA)
        if probe.stream_acked:
            self.stream_rescues += 1
            return  # alive, only its datagrams are lost (memberlist warns the same way)
        record = self._table.record_of(probe.target_id)
        if record is not None:
            self._table.suspect(probe.target_id, record.incarnation, self._table.local_id, now)

    def _send_due_nacks(self, now: float) -> None:
        for seq_no in [s for s, p in self._helpers.items() if p.expires_s <= now]:
            del self._helpers[seq_no]
        for helper in self._helpers.values():
            if helper.nack_at_s is not None and helper.nack_at_s <= now:
                helper.nack_at_s = None
                self._outbox.datagram(helper.requester_addr, [Nack(seq_no=helper.requester_seq_no)])

    # ------------------------------------------------------------------ inputs

    def on_ping(self, sender_addr: str, ping: Ping, *, reliable: bool = False) -> None:
        # A ping for another node means our address was reused: stay silent.
        table = self._table
        if ping.target_id != table.local_id:
            return
        messages: list[SimpleMessage] = [Ack(seq_no=ping.seq_no)]
        accused = table.record_of(ping.source_id)
        if accused is not None and table.state_of(ping.source_id) is MemberState.SUSPECT:
            # The buddy system, the other way round: a suspect that pings us hears
            # the accusation with our ack, so it can refute before its timer runs out.
            suspect = Suspect(
                node_id=ping.source_id, incarnation=accused.incarnation, from_id=table.local_id
            )
            messages.append(suspect)
        if reliable:  # answer on the stream it came by
            reply = messages[0] if len(messages) == 1 else Compound(messages=tuple(messages))
            self._outbox.stream(sender_addr, reply)
        else:
            self._outbox.datagram(sender_addr, messages)

    def on_ack(self, sender_addr: str, seq_no: int, now: float, *, reliable: bool = False) -> None:
        probe = self._probe
        if probe is not None and probe.seq_no == seq_no and reliable:
            probe.stream_acked = True
            return
        if probe is not None and probe.seq_no == seq_no:
            if sender_addr == probe.target_addr:  # a relayed ack measures a detour
                self._rtt.observe(probe.target_id, probe.started_s, now)
            self._awareness.apply_delta(PROBE_SUCCEEDED_DELTA)
            self._probe = None
            return
        helper = self._helpers.pop(seq_no, None)
        if helper is not None:
            self._outbox.datagram(helper.requester_addr, [Ack(seq_no=helper.requester_seq_no)])

    def on_nack(self, seq_no: int) -> None:
        probe = self._probe
        if probe is not None and probe.seq_no == seq_no:
            probe.nacks += 1

    def on_indirect_ping(self, requester_addr: str, request: IndirectPing, now: float) -> None:
        seq_no = self._next_seq_no()
        nack_at_s = None
        wait_s = self._timing.probe_timeout_s
        if request.nack_after_ms is not None:
            nack_after_s = request.nack_after_ms / MILLISECONDS_PER_SECOND
            nack_at_s = now + nack_after_s
            wait_s = max(wait_s, nack_after_s / NACK_TIMEOUT_FRACTION)
        if len(self._helpers) >= HELPER_PROBES_MAX:
            del self._helpers[next(iter(self._helpers))]
            self.helpers_evicted += 1
        self._helpers[seq_no] = HelperProbe(
            requester_addr=requester_addr,
            requester_seq_no=request.seq_no,
            nack_at_s=nack_at_s,
            expires_s=now + wait_s,
        )
        ping = Ping(seq_no=seq_no, target_id=request.target_id, source_id=self._table.local_id)
        self._outbox.datagram(request.target_addr, [ping])

    def _next_seq_no(self) -> int:
        self._seq_no = (self._seq_no + 1) % SEQ_NO_MODULUS
        return self._seq_no
