"""Warm starts (simulations): cores sharing one converged table must behave exactly like
cores that hold the whole table themselves, only cheaper.

A push-pull from a warm-started core carries ``SharedMembers`` (the shared table plus
the sender's changes); it must encode to the bytes of the full list and merge into a
core of the same cluster exactly as the full list would.
"""

from __future__ import annotations

from random import Random

from protocol.membership import (
    MemberJoined,
    MemberRecord,
    Membership,
    MembershipTiming,
    MemberState,
    decode,
    encode,
)
from protocol.membership.codec import encoded_size
from protocol.membership.core import REAP_INTERVAL_S, RECONNECT_INTERVAL_S
from protocol.membership.messages import (
    Ack,
    Alive,
    Compound,
    Dead,
    Message,
    Ping,
    PushPull,
    SharedMembers,
    Suspect,
)
from protocol.membership.table import DEAD_MEMBER_RETENTION_S, WarmTable

LAN = MembershipTiming.lan()
IDS = [f"n{i:02d}" for i in range(40)]


def addr(node_id: str) -> str:
    return f"{node_id}:7733"


def record(node_id: str, **changes: object) -> MemberRecord:
    return MemberRecord(node_id=node_id, addresses=(addr(node_id),), **changes)  # type: ignore[arg-type]


def warm_core(warm: WarmTable, node_id: str, seed: int) -> Membership:
    core = Membership(warm.entries[node_id].record, LAN, Random(seed), keep_decoded=True)
    core.warm_start(warm, 0.0)
    return core


def state_of(core: Membership, now: float, *, reply_to: str = "n39") -> PushPull:
    """``core``'s push-pull, as it answers a request (an empty one) from ``reply_to``."""
    core.receive_message(addr(reply_to), PushPull(join=False, reply=False, members=()), now)
    replies = [o for o in core.outbox() if o.reliable and isinstance(o.decoded, PushPull)]
    assert len(replies) == 1
    reply = replies[0]
    assert isinstance(reply.decoded, PushPull)
    # The bytes of a stream message are not built in keep_decoded mode, only measured.
    assert reply.message == b"" and reply.size == len(encode(reply.decoded))
    return reply.decoded


def changed_sender(warm: WarmTable) -> Membership:
    """n00, which has heard a suspicion, a death and a newer record of others."""
    sender = warm_core(warm, "n00", seed=1)
    rumours: list[Message] = [
        Suspect(node_id="n03", incarnation=0, from_id="n09"),
        Dead(node_id="n05", incarnation=0, from_id="n09"),
        Alive(record=record("n07", version=3, software_version="2.0")),
        Alive(record=record("n77")),  # a newcomer, not in the shared table
    ]
    for rumour in rumours:
        sender.receive_message(addr("n09"), rumour, 1.0)
    return sender


def full_view(core: Membership) -> dict[str, tuple[MemberState, MemberRecord]]:
    return {m.record.node_id: (m.state, m.record) for m in core.members()}


def test_a_warm_push_pull_is_the_whole_table_encoded_the_same() -> None:
    warm = WarmTable([record(n) for n in IDS], 0.0)
    sender = changed_sender(warm)
    state = state_of(sender, 2.0)
    shared = state.members
    assert isinstance(shared, SharedMembers)
    assert len(shared.changed) == 5  # itself, n03, n05, n07 and the newcomer
    as_tuple = tuple(shared)
    assert len(as_tuple) == len(shared) == len(IDS) + 1
    assert {e.record.node_id: (e.state, e.record) for e in as_tuple} == full_view(sender)
    plain = PushPull(join=state.join, reply=state.reply, members=as_tuple)
    assert encode(state) == encode(plain)
    assert encoded_size(state) == encoded_size(plain) == len(encode(plain))
    decoded = decode(encode(state))
    assert isinstance(decoded, PushPull) and decoded.members == as_tuple


def test_merging_shared_members_is_merging_the_whole_table() -> None:
    warm = WarmTable([record(n) for n in IDS], 0.0)
    state = state_of(changed_sender(warm), 2.0)
    assert isinstance(state.members, SharedMembers)
    plain = PushPull(join=False, reply=True, members=tuple(state.members))
    lazy, eager = warm_core(warm, "n20", seed=2), warm_core(warm, "n20", seed=2)
    for core in (lazy, eager):
        core.receive_message(addr("n09"), Alive(record=record("n07", version=9)), 1.0)
        core.events()
    lazy.receive_message(addr("n00"), state, 3.0)
    eager.receive_message(addr("n00"), plain, 3.0)
    lazy_events, eager_events = lazy.events(), eager.events()
    assert lazy_events == eager_events
    assert len(lazy_events) >= 3  # suspected, dead (as a suspicion), joined: news arrived
    assert full_view(lazy) == full_view(eager)
    assert full_view(lazy)["n07"][1].version == 9  # ours was newer than the sender's


def test_a_member_we_forgot_comes_back_from_the_shared_table() -> None:
    warm = WarmTable([record(n) for n in IDS], 0.0)
    receiver = warm_core(warm, "n20", seed=3)
    receiver.receive_message(addr("n09"), Dead(node_id="n11", incarnation=0, from_id="n09"), 1.0)
    later_s = 1.0 + DEAD_MEMBER_RETENTION_S + 2 * REAP_INTERVAL_S
    receiver.tick(later_s)
    assert receiver.member("n11") is None  # reaped
    receiver.events()
    state = state_of(warm_core(warm, "n00", seed=4), later_s)
    assert isinstance(state.members, SharedMembers)
    assert "n11" not in state.members.hidden
    receiver.receive_message(addr("n00"), state, later_s)
    joined = [e for e in receiver.events() if isinstance(e, MemberJoined)]
    assert [e.record.node_id for e in joined] == ["n11"]
    member = receiver.member("n11")
    assert member is not None and member.state is MemberState.ALIVE


def probe_and_ack(core: Membership, now: float, rtt_s: float) -> float:
    """Tick ``core`` until it pings its only peer, ack after ``rtt_s``; the new time."""
    while True:
        now = max(now, core.next_deadline_s())
        core.tick(now)
        pings = [o.decoded for o in core.outbox() if isinstance(o.decoded, Ping)]
        if pings:
            ping = pings[0]
            assert isinstance(ping, Ping)
            now += rtt_s
            core.receive_message(addr("n01"), Ack(seq_no=ping.seq_no), now)
            return now


def test_a_warm_start_takes_its_published_rtts_as_its_own_averages() -> None:
    """The first probe of a published peer moves its average by alpha of the gap, so a
    record published long ago is not re-published at once for one noisy sample."""
    local = record("n00", rtt_ms=(("n01", 1.2),))
    warm = WarmTable([local, record("n01")], 0.0)
    core = Membership(local, LAN, Random(5), keep_decoded=True)
    core.warm_start(warm, 0.0)
    now = probe_and_ack(core, 10.0, rtt_s=0.0035)  # 3.5 ms: 1.2 -> 1.66 ms on average
    core.tick(now + 1.5)  # a publish check
    assert core.local.version == local.version
    for _ in range(20):  # the average really moves to 3.5 ms: that is published
        now = probe_and_ack(core, now, rtt_s=0.0035)
    core.tick(now + 1.5)
    assert core.local.version > local.version
    assert dict(core.local.rtt_ms)["n01"] > 3.0


def reconnect_attempts(dead_count: int, intervals: int) -> int:
    """Push-pulls to dead members while a core of 40 (``dead_count`` of them dead) runs
    ``intervals`` reconnect intervals, answering every ping it sends."""
    warm = WarmTable([record(n) for n in IDS], 0.0)
    core = warm_core(warm, "n00", seed=11)
    dead = {addr(n) for n in IDS[1 : 1 + dead_count]}
    for node_id in IDS[1 : 1 + dead_count]:
        core.receive_message(addr("n39"), Dead(node_id=node_id, incarnation=0, from_id="n39"), 0.0)
    attempts, now = 0, 0.0
    while now < intervals * RECONNECT_INTERVAL_S:
        now = max(now, core.next_deadline_s())
        core.tick(now)
        for out in core.outbox():
            if isinstance(out.decoded, PushPull) and out.addr in dead:
                attempts += 1
            pings = [m for m in parts(out.decoded) if isinstance(m, Ping)]
            for ping in pings:
                core.receive_message(out.addr, Ack(seq_no=ping.seq_no), now)
    assert len([m for m in core.members() if m.state is MemberState.DEAD]) == dead_count
    return attempts


def parts(message: Message | None) -> tuple[Message, ...]:
    if isinstance(message, Compound):
        return message.messages
    return () if message is None else (message,)


def test_the_cluster_tries_each_dead_member_about_once_per_reconnect_interval() -> None:
    """serf's rule: a member reconnects with probability dead / live, so N members do
    not all send their full state to every dead member every interval."""
    intervals = 60
    one_dead = reconnect_attempts(1, intervals)  # probability 1/39
    assert one_dead <= intervals / 4
    half_dead = reconnect_attempts(20, intervals)  # probability 20/20: every interval
    assert half_dead >= intervals - 1
