"""MembershipService end to end on a seeded fake network (pytest-trio, MockClock).

Real services, real cores, real gossip sealing; only the network is fake
(``tests/node/fakenet.py``).  Every fault, every node's core and trio's own
scheduler derive from one seed, printed at the start of each test (pytest shows it
on failure): rerun with ``-k 'seed'`` and the same seed to replay.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from random import Random

import pytest
import trio
import trio.testing

from crypto.gossip import Keyring
from protocol.membership import DeviceInfo, MemberRecord, MembershipTiming, MemberState
from protocol.membership.codec import encode
from protocol.membership.messages import Ping
from tests.node.fakenet import Conditions, FakeNetwork
from vramancer_node.membership import MembershipService

TIMING = MembershipTiming.local()
CLUSTER_ID = "fakenet"
KEY = bytes(range(32))
WRONG_KEY = bytes(range(1, 33))
PORT = 7946
NODES = 5
POLL_S = 0.01
"""How often a test looks at the views; simulated time, so it costs little."""
JOIN_TIMEOUT_S = 10.0
LOSSY = Conditions(loss=0.1, duplicate=0.1, latency_s_min=0.001, latency_s_max=0.08)
"""10 % loss, 10 % duplicates, delays up to 80 ms (well under the 200 ms probe timeout)."""
LOSSY_PROBE_PERIODS = 40


def lifeguard_bounds_s(members: int) -> tuple[float, float]:
    """(earliest, latest) a crash may be declared, from the Lifeguard timing.

    The suspicion timeout lies between ``suspicion_mult * log10(n) * probe_interval``
    and ``suspicion_max_timeout_mult`` times that; before it starts, a probe of the
    crashed node must fail (round-robin: within ``n - 1`` probe periods of some
    survivor), and the verdict needs one more period to reach everyone.
    """
    min_s = TIMING.suspicion_mult * math.log10(members) * TIMING.probe_interval_s
    max_s = TIMING.suspicion_max_timeout_mult * min_s
    return min_s, max_s + members * TIMING.probe_interval_s


def address(index: int) -> str:
    return f"10.0.0.{index + 1}:{PORT}"


def node_id(index: int) -> str:
    return f"node-{index}"


@pytest.fixture(params=[1, 2])
def seed(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """The root seed; also makes trio's scheduler deterministic, as under Hypothesis."""
    value: int = request.param
    print(f"reproduce with seed={value}")
    monkeypatch.setattr(trio._core._run, "_ALLOW_DETERMINISTIC_SCHEDULING", True)
    monkeypatch.setattr(trio._core._run, "_r", Random(value))
    return value


@pytest.fixture
def deaths() -> Iterator[list[str]]:
    """Members declared dead by any node, from the service's log lines."""
    declared: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == "member dead":
                declared.append(record.__dict__["member"])

    logger = logging.getLogger("vramancer.membership")
    handler = Collect(logging.WARNING)
    logger.addHandler(handler)
    yield declared
    logger.removeHandler(handler)


class Cluster:
    """Services on one fake network, each in its own cancel scope (to crash it)."""

    def __init__(self, nursery: trio.Nursery, seed: int, conditions: Conditions) -> None:
        self.rng = Random(seed)
        self.net = FakeNetwork(Random(self.rng.getrandbits(64)), nursery, conditions)
        self.nodes: list[MembershipService] = []
        self.crashed: set[int] = set()
        self._scopes: list[trio.CancelScope] = []
        self._nursery = nursery

    def keyring(self, key: bytes = KEY) -> Keyring:
        nonces = Random(self.rng.getrandbits(64))
        return Keyring([key], CLUSTER_ID, random_bytes=nonces.randbytes)

    async def start(self, count: int) -> None:
        """``count`` services; all but the first join through the first."""
        for index in range(count):
            await self.add(seeds=[address(0)] if index else [])

    async def add(self, *, seeds: list[str]) -> MembershipService:
        index = len(self.nodes)
        transport, carrier = self.net.endpoint(address(index))
        service = MembershipService(
            local=MemberRecord(node_id=node_id(index), addresses=(address(index),)),
            timing=TIMING,
            keyring=self.keyring(),
            bind=address(index),
            seeds=seeds,
            rng=Random(self.rng.getrandbits(64)),
            transport=transport,
            carrier=carrier,
        )
        scope = trio.CancelScope()

        async def run(*, task_status: trio.TaskStatus[None]) -> None:
            with scope:
                await service.run(task_status=task_status)

        await self._nursery.start(run)
        self.nodes.append(service)
        self._scopes.append(scope)
        return service

    def crash(self, index: int) -> None:
        self.net.crash(address(index))
        self._scopes[index].cancel()
        self.crashed.add(index)

    def live(self) -> list[int]:
        return [i for i in range(len(self.nodes)) if i not in self.crashed]

    def view(self, index: int) -> dict[str, MemberState]:
        return {m.record.node_id: m.state for m in self.nodes[index].core.members()}

    def all_alive(self) -> bool:
        expected = {node_id(i): MemberState.ALIVE for i in range(len(self.nodes))}
        return all(self.view(i) == expected for i in self.live())

    def describe(self) -> str:
        views = {node_id(i): self.view(i) for i in self.live()}
        return f"views={views} network.dropped={dict(self.net.dropped)}"


async def wait_until(cluster: Cluster, done: Callable[[], bool], timeout_s: float) -> float:
    """Simulated seconds until ``done()``; fails with the views after ``timeout_s``."""
    start = trio.current_time()
    with trio.move_on_after(timeout_s):
        while not done():
            await trio.sleep(POLL_S)
        return trio.current_time() - start
    raise AssertionError(f"not done after {timeout_s} s: {cluster.describe()}")


async def test_five_services_join_through_one_seed(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    cluster = Cluster(nursery, seed, Conditions())
    await cluster.start(NODES)
    await wait_until(cluster, cluster.all_alive, JOIN_TIMEOUT_S)
    assert all(n.sessions["failed"] == 0 and not n.dropped for n in cluster.nodes)
    assert sum(n.sessions["served"] for n in cluster.nodes) >= NODES - 1  # the joins


async def test_lossy_duplicating_reordering_network_has_no_false_deaths(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, seed: int, deaths: list[str]
) -> None:
    cluster = Cluster(nursery, seed, LOSSY)
    await cluster.start(NODES)
    await wait_until(cluster, cluster.all_alive, JOIN_TIMEOUT_S)
    await trio.sleep(LOSSY_PROBE_PERIODS * TIMING.probe_interval_s)
    assert deaths == [], cluster.describe()
    # The faults really happened; a clean run would prove nothing.
    assert cluster.net.dropped["loss"] > 40
    assert cluster.net.duplicated > 40
    await wait_until(cluster, cluster.all_alive, TIMING.probe_interval_s * NODES)


def test_same_seed_same_run(seed: int) -> None:
    """The whole run, faults and scheduling included, replays from its seed.

    Each replay is a fresh ``trio.run`` from simulated time 0: the core rounds some
    times to whole milliseconds, so a run shifted in time may legitimately differ.
    """

    async def scenario() -> tuple[str, int]:
        async with trio.open_nursery() as nursery:
            cluster = Cluster(nursery, seed, LOSSY)
            await cluster.start(NODES)
            await trio.sleep(10 * TIMING.probe_interval_s)
            cluster.crash(1)
            await trio.sleep(10 * TIMING.probe_interval_s)
            nursery.cancel_scope.cancel()
        print(f"digest {cluster.net.digest} after {cluster.net.delivered} datagrams")
        return cluster.net.digest, cluster.net.delivered

    def replay() -> tuple[str, int]:
        trio._core._run._r.seed(seed)  # the scheduler, as the ``seed`` fixture left it
        return trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0))

    assert replay() == replay()


async def test_crashed_node_is_declared_dead_within_the_lifeguard_bound(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, seed: int, deaths: list[str]
) -> None:
    cluster = Cluster(nursery, seed, Conditions())
    await cluster.start(NODES)
    await wait_until(cluster, cluster.all_alive, JOIN_TIMEOUT_S)
    victim = 3
    cluster.crash(victim)
    earliest_s, latest_s = lifeguard_bounds_s(NODES)

    def everyone_sees_it_dead() -> bool:
        return all(cluster.view(i)[node_id(victim)] == MemberState.DEAD for i in cluster.live())

    elapsed_s = await wait_until(cluster, everyone_sees_it_dead, latest_s)
    print(f"declared dead after {elapsed_s:.2f} s, bounds [{earliest_s:.2f}, {latest_s:.2f}]")
    assert elapsed_s >= earliest_s, "declared dead before any suspicion could expire"
    assert set(deaths) == {node_id(victim)}
    for i in cluster.live():
        others = {k: v for k, v in cluster.view(i).items() if k != node_id(victim)}
        assert set(others.values()) == {MemberState.ALIVE}


async def test_partition_heals_and_the_cluster_converges_alive(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    cluster = Cluster(nursery, seed, Conditions())
    await cluster.start(NODES)
    await wait_until(cluster, cluster.all_alive, JOIN_TIMEOUT_S)
    majority, minority = [0, 1, 2], [3, 4]
    cluster.net.partition([[address(i) for i in majority], [address(i) for i in minority]])

    def split_brain() -> bool:
        return all(
            cluster.view(i)[node_id(j)] == MemberState.DEAD
            for side, other in ((majority, minority), (minority, majority))
            for i in side
            for j in other
        )

    # Lifeguard slows the minority down on purpose: its missed nacks raise its local
    # health multiplier, which stretches its probe interval (awareness).
    stretch = TIMING.awareness_max_multiplier
    await wait_until(cluster, split_brain, stretch * lifeguard_bounds_s(NODES)[1])
    cluster.net.heal()

    def converged() -> bool:
        if not cluster.all_alive():
            return False
        truth = {n.core.local.node_id: n.core.local.incarnation for n in cluster.nodes}
        return all(
            {m.record.node_id: m.record.incarnation for m in n.core.members()} == truth
            for n in cluster.nodes
        )

    # Reconnection: dead members are retried on the reconnect timer (30 s) or by push-pull.
    await wait_until(cluster, converged, 60.0)
    for i in minority:
        assert cluster.nodes[i].core.local.incarnation >= 1, "declared dead, must have refuted"


async def test_update_local_reaches_every_node(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    cluster = Cluster(nursery, seed, LOSSY)
    await cluster.start(NODES)
    await wait_until(cluster, cluster.all_alive, JOIN_TIMEOUT_S)
    devices = (DeviceInfo(kind="cuda", name="H200", memory_total_bytes=141 * 2**30),)
    source = cluster.nodes[2]
    source.update_local(devices=devices)
    version = source.core.local.version

    def everyone_has_it() -> bool:
        records = [n.core.member(node_id(2)) for n in cluster.nodes]
        return all(r is not None and r.record.version >= version for r in records)

    await wait_until(cluster, everyone_has_it, 5.0)
    for n in cluster.nodes:
        member = n.core.member(node_id(2))
        assert member is not None and member.record.devices == devices


async def test_bad_datagrams_are_dropped_and_counted(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    cluster = Cluster(nursery, seed, Conditions())
    await cluster.start(2)
    await wait_until(cluster, cluster.all_alive, JOIN_TIMEOUT_S)
    target = cluster.nodes[0]
    assert not target.dropped, "honest traffic must not be dropped"
    stranger = "10.0.0.99:7946"
    ping = encode(Ping(seq_no=1, target_id=node_id(0), source_id="stranger"))
    wrong = cluster.keyring(WRONG_KEY)
    for _ in range(3):
        cluster.net.send_datagram(stranger, address(0), wrong.seal(ping))
    cluster.net.send_datagram(stranger, address(0), b"short")
    for _ in range(2):
        cluster.net.send_datagram(stranger, address(0), cluster.keyring().seal(b"\xc1 not msgpack"))
    await trio.sleep(TIMING.probe_interval_s)
    assert target.dropped == {"seal": 4, "malformed": 2}
    assert cluster.all_alive()
