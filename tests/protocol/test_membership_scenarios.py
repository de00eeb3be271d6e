"""Whole-cluster scenarios: real cores on the seeded fake network, one claim per test.

Every test prints its seed; a failure shows it above the traceback.  The network is
the one of ``protocol.membership.testing``: seeded loss, duplication, delay, cuts and
partitions, like trio's ``test_handshake_over_terrible_network``.
"""

from __future__ import annotations

from random import Random

import pytest

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
    encode,
)
from protocol.membership.messages import Suspect
from protocol.membership.suspicion import suspicion_timeout_s
from protocol.membership.testing import NetworkConditions, SimCluster, sim_address

LAN = MembershipTiming.lan()
SEEDS = (1, 2, 3)
CLEAN = NetworkConditions()
TERRIBLE = NetworkConditions(loss=0.1, duplicate=0.05, latency_s_min=0.001, latency_s_max=0.05)
GOSSIP_SLACK_S = 2.0
"""Time for a rumour to reach every member of a small cluster, with room to spare."""


def start_cluster(
    seed: int,
    nodes: int = 5,
    *,
    timing: MembershipTiming = LAN,
    conditions: NetworkConditions = CLEAN,
    settle_s: float = 30.0,
) -> SimCluster:
    print(f"reproduce with seed={seed}")
    cluster = SimCluster(seed=seed, timing=timing, conditions=conditions)
    cluster.add_node("n0")
    for index in range(1, nodes):
        cluster.add_node(f"n{index}", seeds=["n0"])
    assert cluster.run_for(settle_s, cluster.converged), f"no convergence, seed={seed}"
    return cluster


def dead_at(cluster: SimCluster, node_id: str, observer: str) -> float | None:
    times = [e.at_s for e in cluster.events_of(MemberDead, about=node_id) if e.observer == observer]
    return min(times, default=None)


def assert_datagrams_fit(cluster: SimCluster) -> None:
    counters = cluster.network.counters
    assert counters.datagrams_oversized == 0
    assert counters.datagram_bytes_max <= DATAGRAM_PLAINTEXT_BYTES_MAX


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("conditions", [CLEAN, TERRIBLE], ids=["clean", "terrible"])
def test_five_nodes_join_and_converge(seed: int, conditions: NetworkConditions) -> None:
    cluster = start_cluster(seed, conditions=conditions)
    cluster.run_for(10.0)
    for observer in cluster.nodes:
        joined = {
            e.event.record.node_id
            for e in cluster.events_of(MemberJoined)  # type: ignore[attr-defined]
            if e.observer == observer
        }
        assert joined == set(cluster.nodes) - {observer}
    assert not cluster.events_of(MemberDead)
    assert cluster.protocol_errors == 0
    assert_datagrams_fit(cluster)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_crashed_node_is_suspected_then_declared_dead_within_the_lifeguard_bound(
    seed: int,
) -> None:
    cluster = start_cluster(seed)
    crash_s = cluster.now
    cluster.crash("n3")
    members = 5
    min_s = suspicion_timeout_s(LAN.suspicion_mult, members, LAN.probe_interval_s)
    max_s = LAN.suspicion_max_timeout_mult * min_s
    # Someone probes n3 within one round of the others, the probe takes an interval,
    # then Lifeguard's timer runs at most max_s; the verdict then spreads by gossip.
    bound_s = (members - 1) * LAN.probe_interval_s + LAN.probe_interval_s + max_s + GOSSIP_SLACK_S
    cluster.run_for(bound_s)
    suspected = cluster.events_of(MemberSuspected, about="n3")
    assert suspected, f"seed={seed}"
    first_suspicion_s = min(e.at_s for e in suspected)
    for observer in cluster.live_ids():
        declared_s = dead_at(cluster, "n3", observer)
        assert declared_s is not None, f"{observer} never declared n3 dead, seed={seed}"
        assert first_suspicion_s + min_s <= declared_s <= crash_s + bound_s
    assert cluster.converged()
    assert not [e for e in cluster.events_of(MemberDead) if e.event.node_id != "n3"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("seed", SEEDS)
def test_a_falsely_suspected_live_node_refutes_and_stays_alive(seed: int) -> None:
    cluster = start_cluster(seed)
    accusation = encode(Suspect(node_id="n2", incarnation=0, from_id="n1"))
    cluster.deliver("n4", sim_address("n1"), accusation)
    cluster.run_for(30.0)
    assert cluster.nodes["n2"].local.incarnation >= 1
    assert not cluster.events_of(MemberDead, about="n2")
    assert cluster.events_of(MemberAlive, about="n2")  # the suspicion was lifted
    for observer in cluster.live_ids():
        member = cluster.nodes[observer].member("n2")
        assert member is not None and member.state is MemberState.ALIVE
        assert member.record.incarnation == cluster.nodes["n2"].local.incarnation


DEAF_MAX_S = 4 * LAN.probe_interval_s + LAN.probe_interval_s
"""A probe round of the other four members plus one probe: someone suspects by then."""


@pytest.mark.parametrize("seed", SEEDS)
def test_a_briefly_deaf_node_is_suspected_refutes_and_is_never_declared_dead(seed: int) -> None:
    cluster = start_cluster(seed)
    for peer in cluster.nodes:
        cluster.network.cut(sim_address(peer), sim_address("n2"))
    # Deaf until someone suspects it (when depends on the probe rounds), then no more.
    deaf_s = 0.0
    while not cluster.events_of(MemberSuspected, about="n2") and deaf_s < DEAF_MAX_S:
        cluster.run_for(0.05)
        deaf_s += 0.05
    assert cluster.events_of(MemberSuspected, about="n2"), f"seed={seed}"
    cluster.network.heal()
    cluster.run_for(30.0)
    assert not cluster.events_of(MemberDead, about="n2")
    assert cluster.converged()
    assert cluster.nodes["n2"].local.incarnation >= 1


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    ("minority", "partition_s"),
    [
        # Alone, n4 retries its seed; some deaths are also young enough to gossip to.
        (("n4",), 60.0),
        # Neither side is alone and every death is older than gossip_to_the_dead_s:
        # only the reconnect timer (push-pull with a random dead member) heals this.
        (("n3", "n4"), 180.0),
    ],
)
def test_a_partitioned_node_is_declared_dead_and_rejoins_after_healing(
    seed: int, minority: tuple[str, ...], partition_s: float
) -> None:
    cluster = start_cluster(seed)
    majority = [n for n in cluster.nodes if n not in minority]
    sides = [[sim_address(n) for n in majority], [sim_address(n) for n in minority]]
    cluster.network.partition(sides)
    cluster.run_for(partition_s)
    for observer in majority:
        assert all(cluster.view(observer)[n] is MemberState.DEAD for n in minority)
    for observer in minority:
        assert all(cluster.view(observer)[n] is MemberState.DEAD for n in majority)
    healed_s = cluster.now
    cluster.network.heal()
    assert cluster.run_for(150.0, cluster.converged), f"no convergence after healing, seed={seed}"
    for node_id in minority:
        assert cluster.nodes[node_id].local.incarnation >= 1
        for observer in majority:
            member = cluster.nodes[observer].member(node_id)
            assert member is not None and member.record.incarnation >= 1
            rejoined = cluster.events_of(MemberJoined, about=node_id)
            assert any(e.observer == observer and e.at_s > healed_s for e in rejoined)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_graceful_leave_is_reported_as_left_not_dead(seed: int) -> None:
    cluster = start_cluster(seed)
    cluster.act("n2", lambda core, now: core.leave(now))
    cluster.run_for(10.0)
    assert cluster.nodes["n2"].pending_broadcasts == 0
    cluster.crash("n2")  # the leaver shuts down once its farewell is out
    cluster.run_for(120.0)
    for observer in cluster.live_ids():
        assert cluster.view(observer)["n2"] is MemberState.LEFT
        left = [e for e in cluster.events_of(MemberLeft, about="n2") if e.observer == observer]
        assert len(left) == 1
    assert not cluster.events_of(MemberDead, about="n2")
    assert not cluster.events_of(MemberSuspected, about="n2")


@pytest.mark.parametrize("seed", SEEDS)
def test_indirect_probes_save_a_node_whose_direct_link_is_broken(seed: int) -> None:
    cluster = start_cluster(seed)
    cluster.network.cut(sim_address("n0"), sim_address("n1"))
    cluster.network.cut(sim_address("n1"), sim_address("n0"))
    cluster.run_for(120.0)
    assert not cluster.events_of(MemberSuspected), f"seed={seed}"
    assert cluster.converged()


@pytest.mark.parametrize("seed", SEEDS)
def test_a_node_that_hears_nothing_loses_confidence_in_itself(seed: int) -> None:
    cluster = start_cluster(seed)
    for peer in cluster.nodes:
        cluster.network.cut(sim_address(peer), sim_address("n0"))
    cluster.run_for(8.0)
    # Its probes fail and no nacks come back: Lifeguard blames n0, not its peers.
    assert cluster.nodes["n0"].health_score >= 3
    assert all(cluster.nodes[n].health_score <= 1 for n in ("n1", "n2", "n3", "n4"))


@pytest.mark.parametrize("seed", SEEDS)
def test_record_updates_reach_every_member(seed: int) -> None:
    cluster = start_cluster(seed, conditions=TERRIBLE)
    for free_gib in (20, 7):  # free memory changes twice
        device = DeviceInfo(
            kind="cuda",
            name="RTX 4090",
            memory_total_bytes=24 << 30,
            memory_free_bytes=free_gib << 30,
        )
        cluster.act("n3", lambda core, now, d=device: core.update_local(now=now, devices=(d,)))
        published = cluster.nodes["n3"].local
        cluster.run_for(5.0)
        for observer in cluster.live_ids():
            member = cluster.nodes[observer].member("n3")
            assert member is not None, f"seed={seed}"
            assert member.record.version >= published.version, f"{observer}, seed={seed}"
            assert member.record.devices == (device,), f"{observer}, seed={seed}"
    updates = cluster.events_of(MemberUpdated, about="n3")
    assert {e.observer for e in updates} == set(cluster.nodes) - {"n3"}


def big_record(node_id: str) -> MemberRecord:
    devices = tuple(
        DeviceInfo(
            kind="cuda",
            name=f"NVIDIA H100 80GB HBM3 #{index}",
            memory_total_bytes=80 << 30,
            memory_free_bytes=(80 - index) << 30,
            compute_tflops=989.4,
        )
        for index in range(8)
    )
    return MemberRecord(
        node_id=node_id,
        addresses=(sim_address(node_id), "10.0.0.1:7733"),
        roles=("worker", "api", "gateway"),
        software_version="0.1.0",
        protocol_version=1,
        devices=devices,
    )


def test_every_datagram_fits_the_budget_even_with_large_records() -> None:
    seed = 11
    print(f"reproduce with seed={seed}")
    cluster = SimCluster(seed=seed, timing=LAN, conditions=TERRIBLE, make_record=big_record)
    cluster.add_node("n0")
    for index in range(1, 30):
        cluster.add_node(f"n{index}", seeds=[f"n{Random(index).randrange(index)}"])
    assert cluster.run_for(60.0, cluster.converged)
    cluster.run_for(30.0)
    assert_datagrams_fit(cluster)
    assert cluster.network.counters.datagram_bytes_max > DATAGRAM_PLAINTEXT_BYTES_MAX // 2


def test_garbage_datagrams_are_rejected_without_harm() -> None:
    seed = 5
    cluster = start_cluster(seed)
    rng = Random(seed)
    for _ in range(200):
        target = f"n{rng.randrange(5)}"
        garbage = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        cluster.deliver(target, "evil:1", b"\x01" + garbage if rng.random() < 0.5 else garbage)
        cluster.run_for(0.05)
    assert cluster.protocol_errors == 200
    cluster.run_for(10.0)
    assert cluster.converged()
    assert not cluster.events_of(MemberSuspected)


@pytest.mark.parametrize("preset", ["lan", "wan", "local"])
def test_every_preset_converges_and_detects_a_crash(preset: str) -> None:
    timing = getattr(MembershipTiming, preset)()
    cluster = start_cluster(7, nodes=6, timing=timing, settle_s=60.0)
    cluster.crash("n5")
    min_s = suspicion_timeout_s(timing.suspicion_mult, 6, timing.probe_interval_s)
    bound_s = 6 * timing.probe_interval_s + timing.suspicion_max_timeout_mult * min_s
    assert cluster.run_for(bound_s + GOSSIP_SLACK_S, cluster.converged)


def test_a_core_survives_a_cluster_where_it_is_the_only_member() -> None:
    core = Membership(MemberRecord(node_id="solo", addresses=("solo:1",)), LAN, Random(3))
    now = 0.0
    for _ in range(1000):
        now = max(now, core.next_deadline_s())
        core.tick(now)
        assert core.outbox() == []
    assert now > 100.0  # timers kept moving
    assert [m.record.node_id for m in core.members()] == ["solo"]
