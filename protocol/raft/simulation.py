"""A seeded, randomized fault simulation of a whole Raft cluster (TigerBeetle's VOPR).

Theory of operation
-------------------
One root seed derives everything: the cluster's shape (3 or 5 voters, 0 to 2
learners), every node's election jitter, every fault and every client request.  A
failing seed replays exactly, so a failure prints ``reproduce with
VRAMANCER_RAFT_SEED=<seed>``.

Time advances in ticks.  In each tick of the **safety phase**:

1. faults strike with the probabilities of :class:`FaultProfile`: partitions form
   and heal, nodes crash and restart;
2. the client proposes writes at whoever believes it leads; the leader sometimes
   changes the configuration (promote, demote, remove, re-add) or transfers
   leadership, and nodes compact their logs;
3. every running node ticks, in random order;
4. messages due this tick are delivered in random order.  When sent, each was
   dropped, duplicated and delayed (0 to ``delay_ticks_max`` ticks: reordering) by
   the :class:`~protocol.raft.simnet.SimNetwork`.

Every ``Ready`` is processed as ``ready.py`` prescribes (persist to a
:class:`~protocol.raft.testing.DurableStore`, send, apply, advance), except that it
is sometimes held back for a while, so inputs interleave with unpersisted state.  A
crash discards the node object, its state machine and any held ``Ready`` (which
may or may not have reached the disk); a restart builds a new node from the store.

After every input the :class:`~protocol.raft.invariants.SafetyChecker` runs.  Then
the **liveness phase** heals everything, restarts every node and stops the faults:
within ``liveness_ticks_max`` a leader must commit a fresh entry and every member of
its configuration must apply up to its commit index, all reaching the same state,
and every write a client saw acknowledged must be in the log.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from random import Random

from protocol.errors import ProtocolError
from protocol.raft.codec import decode, encode
from protocol.raft.conf import ConfChange, ConfChangeKind
from protocol.raft.config import RaftConfig
from protocol.raft.entries import Entry, bootstrap_state
from protocol.raft.errors import ProposalRefused
from protocol.raft.invariants import InvariantViolation, SafetyChecker
from protocol.raft.node import RaftNode
from protocol.raft.ready import Ready
from protocol.raft.roles import Role
from protocol.raft.simnet import SimNetwork
from protocol.raft.testing import DurableStore, KVStateMachine

SEED_ENV = "VRAMANCER_RAFT_SEED"
"""Environment variable naming one seed to replay (read by the tests, not here)."""
KEYS = tuple(f"k{i}" for i in range(6))
"""The client writes to a small key space, so writes overwrite each other."""
TRACE_EVENTS_MAX = 60
"""Recent events kept for the failure message."""


@dataclass(frozen=True, kw_only=True, slots=True)
class FaultProfile:
    """How hostile the simulated world is; probabilities are per tick unless noted."""

    drop: float = 0.08
    """Per message: lost."""
    duplicate: float = 0.04
    """Per message: delivered twice."""
    delay_ticks_max: int = 3
    """Per message: delivered after 0 to this many ticks."""
    partition: float = 0.06
    """A random partition (two groups, or one node isolated) forms."""
    heal: float = 0.1
    """The network heals."""
    crash: float = 0.05
    """A random running node crashes."""
    restart: float = 0.2
    """A random crashed node restarts."""
    leader_bias: float = 0.5
    """Per crash or isolation: the victim is the leader (where the bugs live)."""
    hold_ready: float = 0.25
    """Per Ready: held back instead of processed at once."""
    release_ready: float = 0.5
    """Per held Ready and tick: processed now."""
    propose: float = 0.6
    """The client proposes a write at each node that believes it leads."""
    conf_change: float = 0.06
    """The leader proposes a membership change."""
    transfer: float = 0.03
    """The leader transfers leadership to a random voter."""
    compact: float = 0.08
    """Per Ready processed: the node compacts its log to what it applied."""


SIM_CONFIG = RaftConfig(
    election_ticks=8,
    heartbeat_ticks=2,
    append_entries_max=4,
    inflight_appends_max=3,
    snapshot_timeout_ticks=12,
)
"""Short timeouts and small batches: many elections and snapshots per simulated tick."""


@dataclass(kw_only=True, slots=True)
class SimResult:
    """What one seed did (for tuning and for the test's assertions)."""

    seed: int
    voters: int
    learners: int
    ticks: int = 0
    steps: int = 0
    leaders: int = 0
    committed: int = 0
    acknowledged: int = 0
    snapshots_installed: int = 0
    conf_changes: int = 0
    crashes: int = 0


@dataclass(slots=True)
class _Node:
    node: RaftNode | None
    store: DurableStore
    machine: KVStateMachine = field(default_factory=KVStateMachine)
    held: Ready | None = None


class Simulation:
    """One seeded run: a safety phase with faults, then a liveness phase without."""

    def __init__(
        self, seed: int, faults: FaultProfile | None = None, config: RaftConfig = SIM_CONFIG
    ) -> None:
        self.seed = seed
        self.faults = faults or FaultProfile()
        self.config = config
        self._rng = Random(seed)
        voters = [f"v{i}" for i in range(self._rng.choice((3, 5)))]
        learners = [f"l{i}" for i in range(self._rng.randrange(3))]
        self.result = SimResult(seed=seed, voters=len(voters), learners=len(learners))
        self.checker = SafetyChecker()
        self.tick_now = 0
        self._sequence = 0
        self.network = SimNetwork(
            self._rng,
            drop=self.faults.drop,
            duplicate=self.faults.duplicate,
            delay_ticks_max=self.faults.delay_ticks_max,
        )
        self._faults_on = True
        self._acknowledged: dict[int, Entry] = {}
        self._proposed: dict[tuple[int, int], bytes] = {}
        self.trace: deque[str] = deque(maxlen=TRACE_EVENTS_MAX)
        initial = bootstrap_state(voters, learners)
        self.nodes: dict[str, _Node] = {}
        for node_id in (*voters, *learners):
            sim_node = _Node(node=None, store=DurableStore(initial))
            self.nodes[node_id] = sim_node
            self._start(node_id)

    # ---------------------------------------------------------------- running

    def run(self, fault_ticks: int, liveness_ticks_max: int) -> SimResult:
        """Both phases; raise ``InvariantViolation`` naming the seed on any failure."""
        try:
            for _ in range(fault_ticks):
                self._tick()
            self._heal_everything()
            self._converge(liveness_ticks_max)
        except (InvariantViolation, ProtocolError, AssertionError) as exc:
            raise InvariantViolation(self._failure_report(exc)) from exc
        return self.result

    def _failure_report(self, exc: BaseException) -> str:
        recent = "\n".join(self.trace)
        return (
            f"{type(exc).__name__}: {exc}\nat tick {self.tick_now} of seed {self.seed};"
            f" recent events:\n{recent}\nreproduce with {SEED_ENV}={self.seed}"
        )

    def _tick(self) -> None:
        self.tick_now += 1
        self.result.ticks += 1
        if self._faults_on:
            self._inject_faults()
        self._client_actions()
        running = [n for n, s in self.nodes.items() if s.node is not None]
        self._rng.shuffle(running)
        for node_id in running:
            node = self.nodes[node_id].node
            if node is not None:
                node.tick()
                self._after_input(node_id)
        self._deliver_due()
        for node_id, sim_node in self.nodes.items():
            release = not self._faults_on or self._rng.random() < self.faults.release_ready
            if sim_node.held is not None and release:
                ready, sim_node.held = sim_node.held, None
                self._process(node_id, ready)

    # ---------------------------------------------------------------- nodes

    def _start(self, node_id: str) -> None:
        sim_node = self.nodes[node_id]
        sim_node.machine = KVStateMachine()
        sim_node.machine.install(sim_node.store.snapshot)
        self.checker.check_install(node_id, sim_node.store.snapshot, sim_node.machine.digest())
        sim_node.node = RaftNode(
            node_id, self.config, sim_node.store.state(), Random(self._rng.getrandbits(64))
        )

    def _crash(self, node_id: str) -> None:
        sim_node = self.nodes[node_id]
        if sim_node.held is not None and self._rng.random() < 0.5:
            sim_node.store.persist(sim_node.held)  # on disk, but never sent or applied
        sim_node.node, sim_node.held = None, None
        self.result.crashes += 1
        self.trace.append(f"t{self.tick_now} crash {node_id}")

    def _after_input(self, node_id: str) -> None:
        sim_node = self.nodes[node_id]
        node = sim_node.node
        if node is None:
            return
        self.result.steps += 1
        self.checker.check_node(node)
        if node.role is Role.LEADER and self.checker.leader_of_term.get(node.term) == node_id:
            self.result.leaders = len(self.checker.leader_of_term)
        while sim_node.held is None and node.has_ready():
            ready = node.ready()
            if self._faults_on and self._rng.random() < self.faults.hold_ready:
                sim_node.held = ready
                return
            self._process(node_id, ready)

    def _process(self, node_id: str, ready: Ready) -> None:
        sim_node = self.nodes[node_id]
        node = sim_node.node
        if node is None:
            return
        sim_node.store.persist(ready)
        for message in ready.messages:
            self.network.send(encode(message), self.tick_now)
        machine = sim_node.machine
        if ready.snapshot is not None:
            machine.install(ready.snapshot)
            self.checker.check_install(node_id, ready.snapshot, machine.digest())
            self.result.snapshots_installed += 1
        for entry in ready.committed_entries:
            machine.apply(entry)
            self.checker.check_apply(node_id, entry, machine.digest())
            if self._proposed.get((entry.index, entry.term)) == entry.data:
                self._acknowledged[entry.index] = entry
        node.advance(ready)
        self.checker.check_node(node)  # before compaction hides what just became durable
        self._maybe_compact(node_id)
        self._after_input(node_id)

    def _maybe_compact(self, node_id: str) -> None:
        sim_node = self.nodes[node_id]
        node, machine = sim_node.node, sim_node.machine
        if node is None or not self._faults_on or self._rng.random() >= self.faults.compact:
            return
        if machine.applied_index > node.log.snapshot.index:
            snapshot = node.compact(machine.applied_index, machine.snapshot_data())
            sim_node.store.compacted(snapshot)

    # ---------------------------------------------------------------- network

    def _deliver_due(self) -> None:
        for data in self.network.due(self.tick_now):
            message = decode(data)
            target = self.nodes.get(message.to_id)
            if target is None or target.node is None:
                continue
            if not self.network.reachable(message.from_id, message.to_id):
                continue
            target.node.step(message)
            self._after_input(message.to_id)

    # ---------------------------------------------------------------- the world

    def _inject_faults(self) -> None:
        rng, faults = self._rng, self.faults
        ids = sorted(self.nodes)
        network = self.network
        if rng.random() < faults.partition:
            if rng.random() < 0.5:
                network.groups = {self._victim(ids): 1}
            else:
                network.groups = {node_id: rng.randrange(2) for node_id in ids}
            self.trace.append(f"t{self.tick_now} partition {network.groups}")
        elif network.groups and rng.random() < faults.heal:
            network.heal()
            self.trace.append(f"t{self.tick_now} heal")
        running = [n for n in ids if self.nodes[n].node is not None]
        down = [n for n in ids if self.nodes[n].node is None]
        if running and rng.random() < faults.crash:
            self._crash(self._victim(running))
        if down and rng.random() < faults.restart:
            node_id = rng.choice(down)
            self._start(node_id)
            self.trace.append(f"t{self.tick_now} restart {node_id}")

    def _victim(self, candidates: list[str]) -> str:
        leader = self._leader()
        in_reach = leader is not None and leader.id in candidates
        if leader is not None and in_reach and self._rng.random() < self.faults.leader_bias:
            return leader.id
        return self._rng.choice(candidates)

    def _client_actions(self) -> None:
        for node_id in sorted(self.nodes):
            node = self.nodes[node_id].node
            if node is None or node.role is not Role.LEADER:
                continue
            if self._rng.random() < self.faults.propose:
                self._propose(node_id, node)
            if self._faults_on and self._rng.random() < self.faults.conf_change:
                self._change_membership(node_id, node)
            if self._faults_on and self._rng.random() < self.faults.transfer:
                target = self._rng.choice(sorted(node.conf.voters))
                node.transfer_leadership(target)
                self.trace.append(f"t{self.tick_now} {node_id} transfers to {target}")
            self._after_input(node_id)

    def _propose(self, node_id: str, node: RaftNode) -> bool:
        key = self._rng.choice(KEYS)
        data = KVStateMachine.command(key, f"{self.seed}.{self.tick_now}.{self._sequence}")
        self._sequence += 1
        try:
            index = node.propose(data)
        except ProposalRefused:
            return False
        self._proposed[(index, node.term)] = data
        return True

    def _change_membership(self, node_id: str, node: RaftNode) -> None:
        conf, rng = node.conf, self._rng
        options: list[ConfChange] = []
        for learner in sorted(conf.learners):
            options.append(ConfChange(kind=ConfChangeKind.ADD_VOTER, node_id=learner))
            options.append(ConfChange(kind=ConfChangeKind.REMOVE_NODE, node_id=learner))
        if len(conf.voters) > 1:
            for voter in sorted(conf.voters):
                options.append(ConfChange(kind=ConfChangeKind.ADD_LEARNER, node_id=voter))
        for outsider in sorted(set(self.nodes) - conf.members):
            options.append(ConfChange(kind=ConfChangeKind.ADD_LEARNER, node_id=outsider))
        if not options:
            return
        change = rng.choice(options)
        try:
            node.propose_conf_change(change)
        except ProposalRefused:
            return
        self.result.conf_changes += 1
        self.trace.append(f"t{self.tick_now} {node_id} proposes {change}")

    # ---------------------------------------------------------------- liveness

    def _heal_everything(self) -> None:
        self._faults_on = False
        self.network.faults_on = False
        self.network.heal()
        self.trace.append(f"t{self.tick_now} liveness phase: healed, restarting all")
        for node_id in sorted(self.nodes):
            if self.nodes[node_id].node is None:
                self._start(node_id)

    def _converge(self, ticks_max: int) -> None:
        marker_index = 0
        for _ in range(ticks_max):
            self._tick()
            leader = self._leader()
            if leader is None:
                continue
            log = leader.log
            if marker_index == 0 or log.term(marker_index) != leader.term:
                marker_index = log.last_index + 1 if self._propose(leader.id, leader) else 0
                self._after_input(leader.id)
                continue
            if log.committed >= marker_index and self._all_applied(leader):
                self._final_checks(leader)
                return
        raise InvariantViolation(
            f"no convergence within {ticks_max} ticks after healing: {self._describe()}"
        )

    def _leader(self) -> RaftNode | None:
        leaders = [
            s.node for s in self.nodes.values() if s.node is not None and s.node.role is Role.LEADER
        ]
        return max(leaders, key=lambda n: n.term) if leaders else None

    def _all_applied(self, leader: RaftNode) -> bool:
        target = leader.log.committed
        return all(
            self.nodes[m].machine.applied_index == target
            and self.nodes[m].held is None
            and (node := self.nodes[m].node) is not None
            and node.log.committed == target
            for m in leader.conf.members
        )

    def _final_checks(self, leader: RaftNode) -> None:
        digests = {m: self.nodes[m].machine.digest() for m in leader.conf.members}
        if len(set(digests.values())) != 1:
            raise InvariantViolation(f"state machines differ after convergence: {digests}")
        for sim_node in self.nodes.values():
            if sim_node.node is not None:
                self.checker.check_final_log(sim_node.node)
        for index, entry in self._acknowledged.items():
            if self.checker.committed.get(index) != entry:
                raise InvariantViolation(f"acknowledged write at {index} was lost: {entry}")
        self.result.committed = leader.log.committed
        self.result.acknowledged = len(self._acknowledged)

    def _describe(self) -> str:
        return "; ".join(
            f"{n}: {s.node!r} applied={s.machine.applied_index} conf={sorted(s.node.conf.voters)}"
            f"+{sorted(s.node.conf.learners)}"
            if s.node is not None
            else f"{n}: down"
            for n, s in sorted(self.nodes.items())
        )
