"""One membership core driven by hand: inputs in, messages and events out.

Each test scripts the peers' side of the conversation, like etcd-raft's paper tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.membership import (
    DATAGRAM_PLAINTEXT_BYTES_MAX,
    DeviceInfo,
    MemberAlive,
    MemberDead,
    MemberJoined,
    MemberLeft,
    MemberRecord,
    Membership,
    MembershipTiming,
    MemberState,
    MemberSuspected,
    MemberUpdated,
    Outgoing,
    decode,
    encode,
)
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
    PushPullEntry,
    SimpleMessage,
    Suspect,
)
from protocol.membership.record import COUNTER_MAX
from protocol.membership.rtt import RTT_PUBLISH_INTERVAL_MIN_S

LAN = MembershipTiming.lan()
SEED = 20240601


def addr(node_id: str) -> str:
    return f"{node_id}:7733"


def record(node_id: str, **changes: object) -> MemberRecord:
    return MemberRecord(node_id=node_id, addresses=(addr(node_id),), **changes)  # type: ignore[arg-type]


def make_core(node_id: str = "a", *, peers: tuple[str, ...] = (), seed: int = SEED) -> Membership:
    print(f"reproduce with seed={seed}")
    core = Membership(record(node_id), LAN, Random(seed))
    for peer in peers:
        core.receive(addr(peer), encode(Alive(record=record(peer))), 0.0)
    core.outbox()
    core.events()
    return core


def parts(message: Message) -> tuple[SimpleMessage, ...]:
    return message.messages if isinstance(message, Compound) else (message,)


def sent(outgoing: list[Outgoing]) -> list[tuple[str, SimpleMessage]]:
    """Every message in ``outgoing``, compounds unpacked, with its destination."""
    return [(o.addr, part) for o in outgoing for part in parts(decode(o.message))]


def sent_flagged(outgoing: list[Outgoing]) -> list[tuple[str, SimpleMessage, bool]]:
    """Like :func:`sent`, with whether each went over the stream (``reliable``)."""
    return [(o.addr, p, o.reliable) for o in outgoing for p in parts(decode(o.message))]


Sent = tuple[float, str, SimpleMessage]


class Driver:
    """Plays the shell for one core: keeps the time, ticks deadlines, logs what is sent.

    Peers named in ``responsive`` ack every ping after ``ack_delay_s``, on the
    channel the ping came by.  ``log`` holds everything sent; :meth:`sent` picks
    datagrams unless told otherwise.
    """

    def __init__(
        self, core: Membership, responsive: tuple[str, ...] = (), ack_delay_s: float = 0.0
    ) -> None:
        self.core = core
        self.now = 0.0
        self.log: list[Sent] = []
        self.log_reliable: list[bool] = []
        self.responsive = {addr(peer) for peer in responsive}
        self.ack_delay_s = ack_delay_s
        self._acks: list[tuple[float, str, int, bool]] = []

    def receive(
        self, sender: str, message: Message, at_s: float, *, reliable: bool = False
    ) -> None:
        self.now = max(self.now, at_s)
        self.core.receive(sender, encode(message), self.now, reliable=reliable)
        self._collect()

    def step(self) -> None:
        """Advance to the next deadline or scripted ack, and handle it."""
        self.now = max(self.now, self._next_event_s())
        for ack in sorted(a for a in self._acks if a[0] <= self.now):
            self._acks.remove(ack)
            self.core.receive(ack[1], encode(Ack(seq_no=ack[2])), self.now, reliable=ack[3])
        if self.core.next_deadline_s() <= self.now:
            self.core.tick(self.now)
            assert self.core.next_deadline_s() > self.now, "tick must consume what is due"
        self._collect()

    def run_until(self, end_s: float) -> None:
        while self._next_event_s() <= end_s:
            self.step()
        self.now = max(self.now, end_s)

    def sent(
        self, kind: type, after_s: float = -1.0, *, reliable: bool | None = False
    ) -> list[Sent]:
        """What was sent of ``kind`` after ``after_s``: datagrams, streams (True) or both (None)."""
        return [
            item
            for item, on_stream in zip(self.log, self.log_reliable, strict=True)
            if isinstance(item[2], kind)
            and item[0] > after_s
            and (reliable is None or on_stream == reliable)
        ]

    def _next_event_s(self) -> float:
        return min([self.core.next_deadline_s()] + [a[0] for a in self._acks])

    def _collect(self) -> None:
        out = sent_flagged(self.core.outbox())
        self.log += [(self.now, dst, message) for dst, message, _ in out]
        self.log_reliable += [on_stream for _, _, on_stream in out]
        for dst, message, on_stream in out:
            if isinstance(message, Ping) and dst in self.responsive:
                self._acks.append((self.now + self.ack_delay_s, dst, message.seq_no, on_stream))


def driver(peers: tuple[str, ...] = ()) -> Driver:
    return Driver(make_core(peers=peers))


# ------------------------------------------------------------------ probing


def test_a_ping_for_us_is_acked_to_the_sender() -> None:
    core = make_core()
    core.receive("x:1", encode(Ping(seq_no=41, target_id="a", source_id="x")), 1.0)
    assert sent(core.outbox()) == [("x:1", Ack(seq_no=41))]


def test_a_ping_for_another_node_is_ignored() -> None:
    core = make_core()
    core.receive("x:1", encode(Ping(seq_no=41, target_id="someone-else", source_id="x")), 1.0)
    assert core.outbox() == []


def first_probe(d: Driver) -> tuple[float, str, Ping]:
    while not d.sent(Ping):  # the first probe starts at a random phase
        d.step()
    start_s, target_addr, ping = d.sent(Ping)[0]
    assert isinstance(ping, Ping)
    return start_s, target_addr, ping


def test_an_unanswered_probe_goes_indirect_then_suspects_and_missed_nacks_count() -> None:
    d = driver(peers=("b", "c", "d"))
    start_s, target_addr, ping = first_probe(d)
    d.run_until(start_s + LAN.probe_timeout_s)
    requests = d.sent(IndirectPing)
    assert sorted(dst for _, dst, _ in requests) == sorted(
        addr(p) for p in "bcd" if p != ping.target_id
    )  # indirect_checks is 3 but only 2 members can help
    expected = IndirectPing(
        seq_no=ping.seq_no, target_id=ping.target_id, target_addr=target_addr, nack_after_ms=400
    )
    assert [m for _, _, m in requests] == [expected, expected]
    assert [at_s for at_s, _, _ in requests] == [pytest.approx(start_s + LAN.probe_timeout_s)] * 2
    assert d.core.events() == []
    d.run_until(start_s + LAN.probe_interval_s)
    assert d.core.events() == [
        MemberSuspected(node_id=ping.target_id, incarnation=0, suspected_by="a")
    ]
    assert d.core.health_score == 2  # both expected nacks missing: maybe it is us


def test_nacks_show_we_are_healthy_so_awareness_stays_low() -> None:
    d = driver(peers=("b", "c", "d"))
    start_s, _, ping = first_probe(d)
    d.run_until(start_s + LAN.probe_timeout_s)
    for _, helper, _ in d.sent(IndirectPing):
        d.receive(helper, Nack(seq_no=ping.seq_no), start_s + 0.95)
    d.run_until(start_s + LAN.probe_interval_s)
    assert [type(e) for e in d.core.events()] == [MemberSuspected]
    assert d.core.health_score == 0


def test_awareness_stretches_the_next_probe_and_an_ack_lowers_it() -> None:
    d = driver(peers=("b", "c", "d"))
    start_s, _, _ = first_probe(d)
    d.run_until(start_s + LAN.probe_interval_s)
    assert d.core.health_score == 2
    second_s, second_addr, second = d.sent(Ping, after_s=start_s)[0]
    assert second_s == pytest.approx(start_s + LAN.probe_interval_s)
    d.run_until(second_s + 3 * LAN.probe_timeout_s)
    assert d.sent(IndirectPing, after_s=second_s)[0][0] == pytest.approx(
        second_s + 3 * LAN.probe_timeout_s
    )
    d.receive(second_addr, Ack(seq_no=second.seq_no), second_s + 1.6)  # type: ignore[attr-defined]
    assert d.core.health_score == 1
    d.run_until(second_s + 3 * LAN.probe_interval_s)
    third_s = d.sent(Ping, after_s=second_s)[0][0]
    assert third_s == pytest.approx(second_s + 3 * LAN.probe_interval_s)


def test_acked_probes_are_rtt_samples_published_rarely_in_the_local_record() -> None:
    d = Driver(make_core(peers=("b",)), responsive=("b",), ack_delay_s=0.012)
    start_s, _, _ = first_probe(d)
    d.run_until(start_s + 0.1)
    assert d.core.local.rtt_ms == ()  # not on every probe
    d.run_until(start_s + RTT_PUBLISH_INTERVAL_MIN_S + 1.0)
    assert d.core.local.rtt_ms == (("b", 12.0),)
    assert d.core.local.version == 1
    d.run_until(300.0)
    assert d.core.local.version == 1  # steady measurements: nothing to republish
    assert d.core.local.health == 0


def test_minor_rtt_moves_wait_for_the_next_slow_check_not_the_next_second() -> None:
    """Once a slow check found nothing to publish, the next one is a slow interval
    later: a minor move (+12.5%, 1.5 ms) right after it waits for that check."""
    d = Driver(make_core(peers=("b",)), responsive=("b",), ack_delay_s=0.012)
    d.run_until(100.0)  # published at ~6 s; slow checks at ~36, ~66, ~96 s find nothing
    assert d.core.local.rtt_ms == (("b", 12.0),)
    d.ack_delay_s = 0.0135
    d.run_until(120.0)  # the average moved by more than 10% and 1 ms around 110 s
    assert d.core.local.version == 1
    d.run_until(135.0)
    assert d.core.local.version == 2
    assert dict(d.core.local.rtt_ms)["b"] > 13.0


def test_a_relayed_ack_saves_the_probe_but_is_no_rtt_sample() -> None:
    d = driver(peers=("b", "c"))
    start_s, _, ping = first_probe(d)
    d.run_until(start_s + LAN.probe_timeout_s)
    [(_, helper, _)] = d.sent(IndirectPing)
    d.receive(helper, Ack(seq_no=ping.seq_no), start_s + 0.7)
    assert d.core.health_score == 0
    d.run_until(start_s + 0.99)
    assert d.core.events() == []
    assert d.core.local.rtt_ms == ()


def test_a_silent_target_is_also_pinged_over_the_stream_with_the_ping_reqs() -> None:
    d = driver(peers=("b", "c", "d"))
    start_s, target_addr, ping = first_probe(d)
    d.run_until(start_s + LAN.probe_timeout_s)
    assert d.sent(Ping, reliable=True) == [
        (pytest.approx(start_s + LAN.probe_timeout_s), target_addr, ping)
    ]


def test_a_stream_ack_spares_the_target_but_missed_nacks_still_count() -> None:
    d = driver(peers=("b", "c", "d"))
    start_s, target_addr, ping = first_probe(d)
    d.run_until(start_s + LAN.probe_timeout_s)
    d.receive(target_addr, Ack(seq_no=ping.seq_no), start_s + 0.6, reliable=True)
    d.run_until(start_s + LAN.probe_interval_s)
    assert d.core.events() == []  # alive: only its datagrams are lost
    assert d.core.health_score == 2  # memberlist: the two missing nacks still count
    assert d.core.metrics()["stream_probe_rescues"] == 1
    assert d.core.local.rtt_ms == ()  # a stream round trip is no RTT sample


def test_a_stream_ack_for_another_probe_changes_nothing() -> None:
    d = driver(peers=("b", "c", "d"))
    start_s, target_addr, ping = first_probe(d)
    d.run_until(start_s + LAN.probe_timeout_s)
    d.receive(target_addr, Ack(seq_no=(ping.seq_no + 7) % 2**32), start_s + 0.6, reliable=True)
    d.run_until(start_s + LAN.probe_interval_s)
    assert [type(e) for e in d.core.events()] == [MemberSuspected]


def test_a_ping_over_the_stream_is_acked_on_the_stream() -> None:
    core = make_core()
    core.receive("x:1", encode(Ping(seq_no=41, target_id="a", source_id="x")), 1.0, reliable=True)
    [reply] = core.outbox()
    assert reply.reliable and reply.addr == "x:1"
    assert decode(reply.message) == Ack(seq_no=41)


# ---------------------------------------------------------- helping others


def test_a_helper_relays_the_targets_ack_to_the_requester() -> None:
    d = driver()
    d.receive(
        "r:1", IndirectPing(seq_no=9, target_id="t", target_addr="t:1", nack_after_ms=400), 1.0
    )
    [(_, dst, ping)] = d.log
    assert dst == "t:1" and isinstance(ping, Ping) and ping.target_id == "t"
    d.receive("t:1", Ack(seq_no=ping.seq_no), 1.01)
    assert d.log[1:] == [(1.01, "r:1", Ack(seq_no=9))]
    d.run_until(5.0)
    assert d.sent(Nack) == []


def test_a_helper_nacks_a_silent_target_in_time() -> None:
    d = driver()
    d.receive(
        "r:1", IndirectPing(seq_no=9, target_id="t", target_addr="t:1", nack_after_ms=400), 1.0
    )
    d.run_until(5.0)
    assert d.sent(Nack) == [(pytest.approx(1.4), "r:1", Nack(seq_no=9))]


def test_no_nack_when_none_was_asked_for() -> None:
    d = driver()
    d.receive(
        "r:1", IndirectPing(seq_no=9, target_id="t", target_addr="t:1", nack_after_ms=None), 1.0
    )
    d.run_until(5.0)
    assert d.sent(Nack) == []


# ------------------------------------------------------------- refutation


@pytest.mark.parametrize(
    "accusation",
    [
        Suspect(node_id="a", incarnation=0, from_id="b"),
        Dead(node_id="a", incarnation=0, from_id="b"),
    ],
)
def test_an_accusation_against_us_is_refuted_with_a_higher_incarnation(accusation: Message) -> None:
    d = driver(peers=("b",))
    d.receive(addr("b"), accusation, 1.0)
    assert d.core.local.incarnation == 1
    assert d.core.health_score == 1  # being accused is a hint that we are slow
    member = d.core.member("a")
    assert member is not None and member.state is MemberState.ALIVE
    d.run_until(2.0)
    refutations = [m for _, _, m in d.sent(Alive) if m.record.node_id == "a"]  # type: ignore[attr-defined]
    assert refutations and refutations[0] == Alive(record=d.core.local)


def test_an_accusation_at_an_old_incarnation_is_ignored() -> None:
    d = driver(peers=("b",))
    d.receive(addr("b"), Suspect(node_id="a", incarnation=0, from_id="b"), 1.0)
    d.receive(addr("b"), Suspect(node_id="a", incarnation=0, from_id="c"), 1.1)
    assert d.core.local.incarnation == 1


def test_a_restarted_node_outvotes_its_old_record() -> None:
    d = driver(peers=("b",))
    old_self = record("a", incarnation=5, version=9, roles=("old",))
    d.receive(addr("b"), Alive(record=old_self), 1.0)
    assert d.core.local.incarnation == 6 and d.core.local.version == 10
    assert d.core.local.roles == ()


# ------------------------------------------------------------ rumours


def test_claims_move_members_through_the_state_table() -> None:
    core = make_core(peers=("b",))
    b = record("b")

    def claim(message: Message, now: float) -> list[object]:
        core.receive(addr("c"), encode(message), now)
        return core.events()

    assert claim(Suspect(node_id="b", incarnation=0, from_id="c"), 1.0) == [
        MemberSuspected(node_id="b", incarnation=0, suspected_by="c")
    ]
    assert claim(Alive(record=b), 1.1) == []  # same incarnation: no refutation
    b1 = dataclasses.replace(b, incarnation=1)
    assert claim(Alive(record=b1), 1.2) == [MemberAlive(node_id="b", incarnation=1)]
    assert claim(Dead(node_id="b", incarnation=0, from_id="c"), 1.3) == []  # stale
    assert claim(Dead(node_id="b", incarnation=1, from_id="c"), 1.4) == [
        MemberDead(node_id="b", incarnation=1, declared_by="c")
    ]
    assert claim(Suspect(node_id="b", incarnation=1, from_id="c"), 1.5) == []
    b2 = dataclasses.replace(b, incarnation=2)
    assert claim(Alive(record=b2), 1.6) == [MemberJoined(record=b2)]
    assert claim(Dead(node_id="b", incarnation=2, from_id="b"), 1.7) == [
        MemberLeft(node_id="b", incarnation=2)
    ]


def test_a_newer_version_updates_data_without_touching_liveness() -> None:
    core = make_core(peers=("b",))
    core.receive(addr("c"), encode(Suspect(node_id="b", incarnation=0, from_id="c")), 1.0)
    core.events()
    newer = record("b", version=3, drain=True)
    core.receive(addr("c"), encode(Alive(record=newer)), 1.1)
    assert core.events() == [MemberUpdated(record=newer)]
    member = core.member("b")
    assert member is not None and member.state is MemberState.SUSPECT and member.record.drain


def test_suspicion_expires_into_death_after_the_lifeguard_timeout() -> None:
    d = Driver(make_core(), responsive=tuple("bcde"))
    for peer in "bcde":  # n = 5 members, k = 2: min 4 s, max 24 s
        d.receive(addr(peer), Alive(record=record(peer)), 0.0)
    d.core.events()
    d.receive(addr("c"), Suspect(node_id="b", incarnation=0, from_id="c"), 10.0)
    d.run_until(10.0 + 23.999)  # no confirmations: the maximum
    assert [e for e in d.core.events() if isinstance(e, MemberDead)] == []
    d.run_until(10.0 + 24.0)
    assert d.core.events() == [MemberDead(node_id="b", incarnation=0, declared_by="a")]


def test_each_independent_confirmation_brings_death_closer() -> None:
    d = Driver(make_core(), responsive=tuple("bcde"))
    for peer in "bcde":
        d.receive(addr(peer), Alive(record=record(peer)), 0.0)
    d.receive(addr("c"), Suspect(node_id="b", incarnation=0, from_id="c"), 10.0)
    d.receive(addr("d"), Suspect(node_id="b", incarnation=0, from_id="d"), 11.0)
    d.receive(addr("d"), Suspect(node_id="b", incarnation=0, from_id="d"), 11.5)  # not new
    # One of k=2 confirmations: 24 - log(2)/log(3) * 20 = 11.381 s after the start.
    d.run_until(10.0 + 11.380)
    assert not [e for e in d.core.events() if isinstance(e, MemberDead)]
    d.run_until(10.0 + 11.381)
    assert [e for e in d.core.events() if isinstance(e, MemberDead)] == [
        MemberDead(node_id="b", incarnation=0, declared_by="a")
    ]
    confirmations = [m for _, _, m in d.sent(Suspect) if m.from_id == "d"]  # type: ignore[attr-defined]
    assert confirmations, "a new accuser is re-gossiped so others can count it too"


def test_suspicions_heard_in_anti_entropy_are_no_confirmations() -> None:
    d = Driver(make_core(), responsive=tuple("bcde"))
    for peer in "bcde":
        d.receive(addr(peer), Alive(record=record(peer)), 0.0)
    d.receive(addr("c"), Suspect(node_id="b", incarnation=0, from_id="c"), 10.0)
    hearsay = (PushPullEntry(record=record("b"), state=MemberState.SUSPECT),)
    for peer, at_s in (("d", 11.0), ("e", 12.0)):
        d.receive(addr(peer), PushPull(join=False, reply=True, members=hearsay), at_s)
    d.run_until(10.0 + 23.999)  # still the full 24 s: repetition is not evidence
    assert [e for e in d.core.events() if isinstance(e, MemberDead)] == []
    regossiped = {m.from_id for _, dst, m in d.sent(Suspect) if dst != addr("b")}  # type: ignore[attr-defined]
    assert regossiped == {"c"}  # only the real accusation travels on
    d.run_until(10.0 + 24.0)
    assert [type(e) for e in d.core.events()] == [MemberDead]


def test_push_pull_merges_state_and_answers_over_the_stream() -> None:
    core = make_core(peers=("b", "c"))
    remote = PushPull(
        join=False,
        reply=False,
        members=(
            PushPullEntry(record=record("b"), state=MemberState.DEAD),
            PushPullEntry(record=record("c"), state=MemberState.LEFT),
            PushPullEntry(record=record("d"), state=MemberState.ALIVE),
        ),
    )
    core.receive("d:7733", encode(remote), 1.0)
    events = core.events()
    # A death we did not witness is only a suspicion here.
    assert MemberSuspected(node_id="b", incarnation=0, suspected_by="a") in events
    assert MemberLeft(node_id="c", incarnation=0) in events
    assert MemberJoined(record=record("d")) in events
    [reply] = core.outbox()
    assert reply.reliable and reply.addr == "d:7733"
    answer = decode(reply.message)
    assert isinstance(answer, PushPull) and answer.reply and not answer.join
    assert {e.record.node_id for e in answer.members} == {"a", "b", "c", "d"}


def test_join_sends_our_state_to_every_seed_over_the_stream() -> None:
    core = make_core()
    core.join(["s1:7733", "s2:7733"], 0.0)
    out = core.outbox()
    assert [(o.addr, o.reliable) for o in out] == [("s1:7733", True), ("s2:7733", True)]
    ours = PushPullEntry(record=core.local, state=MemberState.ALIVE)
    assert {decode(o.message) for o in out} == {PushPull(join=True, reply=False, members=(ours,))}
    d = Driver(core)
    d.run_until(4.9)
    assert d.sent(PushPull, reliable=None) == []
    d.run_until(5.1)  # still alone: try the seeds again
    assert [dst for _, dst, _ in d.sent(PushPull, reliable=True)] == ["s1:7733", "s2:7733"]


# --------------------------------------------------------- local record


def test_update_local_bumps_the_version_and_gossips_the_record() -> None:
    core = make_core(peers=("b",))
    gpu = DeviceInfo(
        kind="cuda", name="RTX 4090", memory_total_bytes=24 << 30, memory_free_bytes=20 << 30
    )
    core.update_local(now=1.0, devices=(gpu,))
    assert core.local.version == 1 and core.local.devices == (gpu,)
    core.update_local(now=1.1, devices=(gpu,))
    assert core.local.version == 1  # nothing changed, nothing to publish
    d = Driver(core)
    d.now = 1.1
    d.run_until(2.0)
    gossip = [m for _, _, m in d.sent(Alive)]
    assert gossip and gossip[0] == Alive(record=core.local)


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"version": 7}, "cannot change version"),
        ({"rtt_ms": ()}, "cannot change rtt_ms"),
        ({"node_id": "z"}, "cannot change node_id"),
        ({"roles": ["worker"]}, "roles must be a tuple"),
        ({"colour": "red"}, "cannot change colour"),
    ],
)
def test_update_local_rejects_what_the_caller_does_not_own(
    changes: dict[str, object], complaint: str
) -> None:
    core = make_core()
    with pytest.raises(LocalProtocolError, match=complaint):
        core.update_local(now=1.0, **changes)


def test_a_local_record_too_big_for_a_datagram_is_refused() -> None:
    devices = tuple(
        DeviceInfo(kind="cuda", name="x" * 64, memory_total_bytes=2**62) for _ in range(16)
    )
    huge = record("a", devices=devices, roles=tuple("r" * 30 + str(i) for i in range(8)))
    with pytest.raises(LocalProtocolError, match="does not fit one gossip datagram"):
        Membership(huge, LAN, Random(SEED))


def test_time_must_not_go_backwards() -> None:
    core = make_core()
    core.tick(5.0)
    with pytest.raises(LocalProtocolError, match="time went backwards"):
        core.tick(4.0)


# ------------------------------------------------------------------ leave


def test_leave_gossips_a_farewell_and_stops_probing() -> None:
    d = driver(peers=("b", "c"))
    d.core.leave(1.0)
    d.now = 1.0
    assert d.core.has_left
    d.run_until(60.0)
    assert d.sent(Ping) == [] and d.sent(PushPull) == []
    farewells = {m for _, _, m in d.sent(Dead)}
    assert farewells == {Dead(node_id="a", incarnation=0, from_id="a")}
    assert d.core.pending_broadcasts == 0
    d.receive(addr("b"), Suspect(node_id="a", incarnation=0, from_id="b"), 61.0)
    assert d.core.local.incarnation == 0  # a leaver does not refute
    with pytest.raises(LocalProtocolError):
        d.core.join(["b:7733"], 62.0)


# ------------------------------------------------------------ bad input


def test_garbage_raises_remote_protocol_error_and_changes_nothing() -> None:
    core = make_core(peers=("b",))
    before = core.members()
    for garbage in (b"", b"\x01", b"\x07junk", b"\x01\x92\x03\xff", encode(Ack(seq_no=1))[:-1]):
        with pytest.raises(RemoteProtocolError):
            core.receive("x:1", garbage, 1.0)
    assert core.members() == before
    assert core.outbox() == [] and core.events() == []


def test_a_message_fed_byte_by_byte_as_datagrams_is_rejected_byte_by_byte() -> None:
    core = make_core(peers=("b",))
    message = encode(Alive(record=record("c", roles=("worker",))))
    for index in range(len(message)):
        with pytest.raises(RemoteProtocolError):
            core.receive("x:1", message[index : index + 1], 1.0)
    core.receive("x:1", message, 1.0)
    assert core.events() == [MemberJoined(record=record("c", roles=("worker",)))]


fuzz_ids = st.sampled_from(["a", "b", "c", "d"])
fuzz_counters = st.sampled_from([0, 1, 2, 3, COUNTER_MAX - 1, COUNTER_MAX])
fuzz_messages = st.one_of(
    st.builds(Ping, seq_no=st.integers(0, 5), target_id=fuzz_ids, source_id=fuzz_ids),
    st.builds(Ack, seq_no=st.integers(0, 2**32 - 1)),
    st.builds(Nack, seq_no=st.integers(0, 2**32 - 1)),
    st.builds(Suspect, node_id=fuzz_ids, incarnation=fuzz_counters, from_id=fuzz_ids),
    st.builds(Dead, node_id=fuzz_ids, incarnation=fuzz_counters, from_id=fuzz_ids),
    st.builds(
        Alive,
        record=st.builds(record, fuzz_ids, incarnation=fuzz_counters, version=fuzz_counters),
    ),
    st.builds(
        IndirectPing,
        seq_no=st.integers(0, 5),
        target_id=fuzz_ids,
        target_addr=fuzz_ids.map(addr),
        nack_after_ms=st.none() | st.integers(0, 2000),
    ),
)


@settings(max_examples=60, derandomize=True, deadline=None)
@given(st.lists(st.tuples(fuzz_messages, st.floats(0.0, 3.0), st.binary(max_size=12)), max_size=40))
def test_any_sequence_of_inputs_keeps_the_core_sound(
    script: list[tuple[SimpleMessage, float, bytes]],
) -> None:
    core = make_core(peers=("b", "c"))
    now = 0.0
    for message, pause_s, garbage in script:
        now += pause_s
        core.receive(addr("b"), encode(message), now)
        with contextlib.suppress(RemoteProtocolError):
            core.receive("x:1", garbage, now)
        core.tick(now)
        assert core.next_deadline_s() > now
        for outgoing in core.outbox():
            assert outgoing.reliable or len(outgoing.message) <= DATAGRAM_PLAINTEXT_BYTES_MAX
            decode(outgoing.message)
        core.events()
    assert core.member("a") is not None
    assert core.member("a").state is MemberState.ALIVE  # type: ignore[union-attr]
