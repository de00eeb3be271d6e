"""Three real ConsensusServices (real LMDB stores, real Raft cores) over an in-memory
network under trio's MockClock: bootstrap, admissions, autopilot voters, a forwarded
placement, a crashed leader, a revocation that removes a member from the
configuration, and a restart that catches up without repeating its side effects."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from crypto import certs
from crypto.certs import ClusterCA
from crypto.identity import generate_identity
from protocol.control import AdmitMember, Outcome, PlacementEpoch, Revoke, StageRange
from protocol.raft import RaftConfig, Role
from tests.consensus.fakenet import FakeRaftNet
from vramancer_node.consensus import ConsensusService, ConsensusSettings, VoterManager
from vramancer_node.consensus.service import ProposalFailed, ProposalRejected

CA = ClusterCA.generate()
SETTINGS = ConsensusSettings(tick_interval_s=0.1, raft=RaftConfig(), proposal_timeout_s=30.0)
COMPACTING = dataclasses.replace(SETTINGS, compact_entries=4)
"""Local snapshots every 4 applied entries: a node that was away gets a snapshot."""
POLL_S = 0.1
WAIT_S_MAX = 120.0


@pytest.fixture
def clock() -> trio.testing.MockClock:
    # Jump only after 10 ms of real idleness, so a store's fsync (on its writer
    # thread) is not mistaken for the whole cluster being asleep.
    return trio.testing.MockClock(autojump_threshold=0.01)


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vrmt-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Member:
    def __init__(self, name: str, serial: int) -> None:
        identity = generate_identity()
        self.name = name
        self.node_id = identity.node_id
        self.serial = serial
        self.admission = AdmitMember(
            node_id=identity.node_id,
            certificate=certs.issue(
                CA,
                node_pubkey=identity.public_key,
                node_name=name,
                roles=("member",),
                serial=serial,
                now=1_700_000_000,
                ttl_s=3600,
            ).encode(),
        )


class Harness:
    def __init__(
        self, root: Path, nursery: trio.Nursery, settings: ConsensusSettings = SETTINGS
    ) -> None:
        self.settings = settings
        self.root = root
        self.nursery = nursery
        self.net = FakeRaftNet()
        self.members = {name: Member(name, serial) for serial, name in enumerate("abc", 2)}
        self.services: dict[str, ConsensusService] = {}
        self.scopes: dict[str, trio.CancelScope] = {}
        self.effects: dict[str, list[int]] = {name: [] for name in self.members}
        self.roles: dict[str, tuple[str, ...]] = {name: ("admin", "member") for name in "abc"}

    def alive(self) -> set[str]:
        return set(self.net.nodes)

    async def start(self, name: str) -> None:
        member = self.members[name]

        async def record(outcome: Outcome) -> None:
            self.effects[name].append(outcome.index)

        service = ConsensusService(
            node_id=member.node_id,
            state_dir=self.root / name,
            settings=self.settings,
            transport=self.net.transport(member.node_id, self.roles[name]),  # type: ignore[arg-type]
            ca_pubkey=CA.pubkey,
            bootstrap=lambda: name == "a",
            on_outcome=record,
        )
        voters = VoterManager(service, alive=self.alive, max_voters=3, stabilisation_s=0.5)

        async def run(task_status: trio.TaskStatus[None]) -> None:
            with trio.CancelScope() as scope:
                self.scopes[name] = scope
                async with trio.open_nursery() as nursery:
                    await nursery.start(service.run)
                    nursery.start_soon(voters.run)
                    task_status.started()

        (self.root / name).mkdir(exist_ok=True)
        await self.nursery.start(run)
        self.services[name] = service

    def crash(self, name: str) -> None:
        self.scopes.pop(name).cancel()
        del self.services[name]

    def leader(self) -> str | None:
        leaders = [n for n, s in self.services.items() if s.raft.role is Role.LEADER]
        return leaders[0] if len(leaders) == 1 else None

    async def until(self, predicate, what: str) -> None:  # type: ignore[no-untyped-def]
        with trio.move_on_after(WAIT_S_MAX) as scope:
            while not predicate():
                await trio.sleep(POLL_S)
        assert not scope.cancelled_caught, f"{what} did not happen: {self.describe()}"

    def describe(self) -> str:
        views = []
        for name, s in sorted(self.services.items()):
            raft = s.raft
            views.append(
                f"{name}: {raft.role.value} term={raft.term} leader={raft.leader_id}"
                f" commit={raft.log.committed} applied={s.control.applied_index}"
                f" last={raft.log.last_index} voters={sorted(raft.conf.voters)}"
                f" learners={sorted(raft.conf.learners)}"
            )
        names = {m.node_id: n for n, m in self.members.items()}
        text = "; ".join(views)
        for node_id, name in names.items():
            text = text.replace(node_id, name)
        return text

    def agree(self) -> bool:
        snapshots = {s.control.snapshot() for s in self.services.values()}
        return len(snapshots) == 1


async def a_survivor_submits(h: Harness) -> None:
    """After the revocation, the remaining two still commit."""
    stages = (StageRange(node_id=h.members["a"].node_id, device_index=0, first_layer=0,
                         last_layer_exclusive=3),)  # fmt: skip
    await h.services["a"].submit(PlacementEpoch(model_id="tiny", epoch=2, stages=stages))


async def test_three_services_agree_survive_a_crash_and_restart(root: Path, clock) -> None:
    async with trio.open_nursery() as nursery:
        h = Harness(root, nursery, COMPACTING)
        for name in "abc":
            await h.start(name)
        await h.until(lambda: h.leader() == "a", "the founder leading its one-voter cluster")
        a = h.services["a"]
        for member in h.members.values():
            await a.submit(member.admission)
        ids = sorted(m.node_id for m in h.members.values())
        await h.until(
            lambda: all(sorted(s.raft.conf.voters) == ids for s in h.services.values()),
            "every member voting",
        )
        await h.until(h.agree, "the same control state everywhere")

        # A follower's proposal is forwarded to the leader and applied here.
        c = h.services["c"]
        stages = tuple(
            StageRange(node_id=m.node_id, device_index=0, first_layer=i, last_layer_exclusive=i + 1)
            for i, m in enumerate(h.members.values())
        )
        applied = await c.submit(PlacementEpoch(model_id="tiny", epoch=1, stages=stages))
        assert c.control.placement("tiny") is not None
        with pytest.raises(ProposalRejected, match="expected 2"):
            await c.submit(PlacementEpoch(model_id="tiny", epoch=1, stages=stages))
        await h.until(h.agree, "the placement everywhere")

        # The leader crashes; the two others elect one of them and carry on.
        h.crash("a")
        await h.until(lambda: h.leader() in ("b", "c"), "a new leader")
        # Meanwhile the survivors compact their logs past what a holds.
        b = h.services["b"]
        for serial in range(100, 106):
            await b.submit(Revoke(serial=serial, reason="while a is away"))
        assert b.raft.log.snapshot.index > applied.index

        # The old leader restarts from its store and catches up (from a snapshot).
        await h.start("a")
        restarted = h.services["a"]
        await h.until(h.agree, "the restarted node caught up")
        assert restarted.raft.log.snapshot.index > applied.index
        committed = restarted.control.placement("tiny")
        assert committed is not None and committed.index == applied.index

        # Revoking c (whatever its role) removes it from the configuration; the others
        # carry on without it, and the stale view it is left with cannot disrupt them.
        revoked = h.members["c"]
        assert b.control.members[revoked.node_id].serial == 4
        await b.submit(Revoke(serial=4, reason="stolen"))
        assert 4 in b.control.revoked_serials()  # applied on the proposer when submit returns

        def removed() -> bool:
            leader = h.leader()
            return (
                leader in ("a", "b")
                and revoked.node_id not in h.services[leader].raft.conf.members
                and restarted.control.snapshot() == b.control.snapshot()
            )

        await h.until(removed, "the revoked member removed from the configuration")
        await a_survivor_submits(h)
        await h.until(lambda: h.effects["b"][-1] == h.effects["a"][-1], "b applied it")
        # Side effects (audit records) ran once per entry, also across a's restart.
        for name, indexes in h.effects.items():
            assert indexes == sorted(set(indexes)), f"{name} repeated side effects: {indexes}"
        nursery.cancel_scope.cancel()


async def test_an_isolated_leader_cannot_commit_and_rejoins_after_the_partition(
    root: Path, clock
) -> None:
    async with trio.open_nursery() as nursery:
        h = Harness(root, nursery)
        for name in "abc":
            await h.start(name)
        await h.until(lambda: h.leader() == "a", "the founder leading")
        for member in h.members.values():
            await h.services["a"].submit(member.admission)
        await h.until(
            lambda: all(len(s.raft.conf.voters) == 3 for s in h.services.values()),
            "every member voting",
        )
        old = h.leader()
        assert old is not None
        isolated = h.services[old]
        h.net.isolate(isolated.node_id)

        def majority_leader() -> str | None:
            leaders = [n for n, s in h.services.items() if n != old and s.raft.role is Role.LEADER]
            return leaders[0] if leaders else None

        await h.until(lambda: majority_leader() is not None, "a leader in the majority")
        majority = h.services[majority_leader()]  # type: ignore[index]
        await majority.submit(Revoke(serial=99, reason="during the partition"))
        with pytest.raises(ProposalFailed):
            await isolated.submit(Revoke(serial=98, reason="from the minority"))
        assert isolated.raft.role is not Role.LEADER  # CheckQuorum made it step down

        h.net.heal()
        await h.until(h.agree, "the old leader caught up")
        assert 99 in isolated.control.revoked_serials()
        assert 98 not in isolated.control.revoked_serials()  # never committed
        nursery.cancel_scope.cancel()


async def test_a_member_without_the_admin_role_cannot_forward_proposals(root: Path, clock) -> None:
    async with trio.open_nursery() as nursery:
        h = Harness(root, nursery)
        h.roles["c"] = ("member",)
        for name in "abc":
            await h.start(name)
        await h.until(lambda: h.leader() == "a", "the founder leading")
        for member in h.members.values():
            await h.services["a"].submit(member.admission)
        await h.until(lambda: h.services["c"].raft.leader_id is not None, "c knows the leader")
        c = h.services["c"]
        with pytest.raises(PermissionError, match="admin"):
            await c.submit(Revoke(serial=h.members["b"].serial, reason="a member's coup"))
        assert h.members["b"].serial not in h.services["a"].control.revoked_serials()
        # An admin's forwarded proposal still goes through.
        await h.services["b"].submit(Revoke(serial=77, reason="by an admin"))
        nursery.cancel_scope.cancel()
