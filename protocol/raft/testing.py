"""A scripted in-memory Raft cluster, a model of the shell's disk, and a tiny KV store.

Theory of operation
-------------------
Like memberlist's ``mock_transport.go`` this ships with the library: the scenario
tests, the randomized simulator (``simulation.py``) and ``simulations/`` drive real
:class:`~protocol.raft.node.RaftNode` cores with it.  No sockets, clocks or threads.

* :class:`KVStateMachine` is the replicated state machine of the tests: ``set``
  commands on a dict, a snapshot that is the sorted dict in msgpack, and the
  sequence of applied entries kept for comparison between nodes.
* :class:`DurableStore` is what a crash-safe shell would have on disk: it applies a
  ``Ready`` exactly as ``ready.py`` prescribes, and :meth:`DurableStore.state` is the
  ``PersistentState`` a restarted node gets.  Nothing else survives a crash.
* :class:`Cluster` processes every ``Ready`` in the prescribed order (persist, send,
  apply, advance) and delivers messages in FIFO order until the cluster is quiet,
  through a network that can isolate nodes, cut links and drop by predicate.  Tests
  script time with :meth:`Cluster.tick` and faults with the other methods.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from random import Random

import msgpack

from protocol.raft.codec import decode, encode
from protocol.raft.config import RaftConfig
from protocol.raft.entries import (
    EMPTY_SNAPSHOT,
    Entry,
    EntryKind,
    HardState,
    PersistentState,
    Snapshot,
    bootstrap_state,
)
from protocol.raft.messages import Message
from protocol.raft.node import RaftNode
from protocol.raft.ready import Ready
from protocol.raft.roles import Role

QUIET_ROUNDS_MAX = 10_000
"""Delivery rounds :meth:`Cluster.run` allows before declaring a livelock."""


class KVStateMachine:
    """``set key value`` on a dict; remembers every entry it applied."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.applied_index = 0
        self.applied: list[Entry] = []
        """Entries applied since the last snapshot install (or start)."""

    @staticmethod
    def command(key: str, value: str) -> bytes:
        """The proposal that sets ``key`` to ``value``."""
        packed: bytes = msgpack.packb(["set", key, value])
        return packed

    def apply(self, entry: Entry) -> None:
        if entry.index != self.applied_index + 1:
            raise AssertionError(
                f"applied entry {entry.index} after {self.applied_index}: out of order"
            )
        if entry.kind is EntryKind.NORMAL and entry.data:
            _, key, value = msgpack.unpackb(entry.data)
            self.data[key] = value
        self.applied_index = entry.index
        self.applied.append(entry)

    def digest(self) -> tuple[tuple[str, str], ...]:
        """The state, comparable between nodes."""
        return tuple(sorted(self.data.items()))

    def snapshot_data(self) -> bytes:
        packed: bytes = msgpack.packb(sorted(self.data.items()))
        return packed

    def install(self, snapshot: Snapshot) -> None:
        self.data = dict(msgpack.unpackb(snapshot.data)) if snapshot.data else {}
        self.applied_index = snapshot.index
        self.applied = []


class DurableStore:
    """What a crash-safe shell has on disk, updated from each ``Ready``."""

    def __init__(self, initial: PersistentState | None) -> None:
        self.hard_state = initial.hard_state if initial else HardState(term=0, vote=None, commit=0)
        self.snapshot = initial.snapshot if initial else EMPTY_SNAPSHOT
        self.entries: list[Entry] = list(initial.entries) if initial else []

    def persist(self, ready: Ready) -> None:
        """Step 1 of processing a Ready: snapshot, entries, hard state."""
        if ready.snapshot is not None:
            self.snapshot = ready.snapshot
            self.entries = []
        if ready.entries:
            first = ready.entries[0].index
            del self.entries[max(0, first - self.snapshot.index - 1) :]
            self.entries.extend(ready.entries)
        if ready.hard_state is not None:
            self.hard_state = ready.hard_state

    def compacted(self, snapshot: Snapshot) -> None:
        """The shell persisted a local snapshot and dropped the entries it covers."""
        if snapshot.index <= self.snapshot.index:
            return
        del self.entries[: snapshot.index - self.snapshot.index]
        self.snapshot = snapshot

    def state(self) -> PersistentState | None:
        """What a restarted node gets (None for a node that never persisted anything)."""
        if self.snapshot is EMPTY_SNAPSHOT and not self.entries and self.hard_state.term == 0:
            return None
        return PersistentState(
            hard_state=self.hard_state, snapshot=self.snapshot, entries=tuple(self.entries)
        )


def fast_config(**overrides: int | bool) -> RaftConfig:
    """A config for tests: small limits so snapshots and flow control show up quickly."""
    settings: dict[str, int | bool] = {
        "election_ticks": 10,
        "heartbeat_ticks": 1,
        "append_entries_max": 8,
        "inflight_appends_max": 4,
        "snapshot_timeout_ticks": 20,
    }
    settings.update(overrides)
    return RaftConfig(**settings)  # type: ignore[arg-type]


class Cluster:
    """Raft nodes on a scripted, FIFO, in-memory network."""

    def __init__(
        self,
        voters: Sequence[str],
        learners: Sequence[str] = (),
        *,
        config: RaftConfig | None = None,
        seed: int = 0,
    ) -> None:
        self.config = config or fast_config()
        self._rng = Random(seed)
        self.nodes: dict[str, RaftNode] = {}
        self.stores: dict[str, DurableStore] = {}
        self.machines: dict[str, KVStateMachine] = {}
        self.down: set[str] = set()
        self.cut_links: set[tuple[str, str]] = set()
        self.drop: Callable[[Message], bool] = lambda message: False
        """Messages for which this returns True are lost."""
        self.in_flight: deque[Message] = deque()
        self.delivered: list[Message] = []
        """Every message handed to a node, in order (for assertions)."""
        initial = bootstrap_state(voters, learners)
        for node_id in (*voters, *learners):
            self.add_node(node_id, initial)

    # ---------------------------------------------------------------- nodes

    def add_node(self, node_id: str, initial: PersistentState | None = None) -> RaftNode:
        """Start a node (a joiner when ``initial`` is None)."""
        self.stores[node_id] = DurableStore(initial)
        self.machines[node_id] = KVStateMachine()
        if initial is not None:
            self.machines[node_id].install(initial.snapshot)
        return self._start(node_id)

    def _start(self, node_id: str) -> RaftNode:
        node = RaftNode(
            node_id, self.config, self.stores[node_id].state(), Random(self._rng.getrandbits(64))
        )
        self.nodes[node_id] = node
        return node

    def replace_state(self, node_id: str, state: PersistentState) -> RaftNode:
        """Give ``node_id`` a different disk (a hand-built log) and restart it."""
        self.stores[node_id] = DurableStore(state)
        return self.restart(node_id)

    def crash(self, node_id: str) -> None:
        """Lose everything not persisted; the node is down until :meth:`restart`."""
        self.down.add(node_id)

    def restart(self, node_id: str) -> RaftNode:
        """Restart from the durable store; the state machine is rebuilt from the snapshot."""
        self.down.discard(node_id)
        store = self.stores[node_id]
        self.machines[node_id].install(store.snapshot)
        return self._start(node_id)

    def leader(self) -> RaftNode | None:
        """The leader with the highest term among running nodes, if any."""
        leaders = [
            node
            for node_id, node in self.nodes.items()
            if node_id not in self.down and node.role is Role.LEADER
        ]
        return max(leaders, key=lambda node: node.term) if leaders else None

    # ---------------------------------------------------------------- network

    def isolate(self, node_id: str) -> None:
        """Cut every link to and from ``node_id``."""
        for other in self.nodes:
            if other != node_id:
                self.cut_links.update({(node_id, other), (other, node_id)})

    def partition(self, *groups: Iterable[str]) -> None:
        """Only nodes in the same group can talk."""
        group_of = {node_id: index for index, group in enumerate(groups) for node_id in group}
        for a in self.nodes:
            for b in self.nodes:
                if a != b and group_of.get(a, -1) != group_of.get(b, -1):
                    self.cut_links.add((a, b))

    def heal(self) -> None:
        self.cut_links.clear()
        self.drop = lambda message: False

    # ---------------------------------------------------------------- driving

    def process_ready(self, node_id: str) -> bool:
        """Persist, send, apply and advance one Ready of ``node_id``; False if none."""
        node = self.nodes[node_id]
        if node_id in self.down or not node.has_ready():
            return False
        ready = node.ready()
        self.stores[node_id].persist(ready)
        # Through the codec, so every scripted scenario also exercises the wire format.
        self.in_flight.extend(decode(encode(message)) for message in ready.messages)
        machine = self.machines[node_id]
        if ready.snapshot is not None:
            machine.install(ready.snapshot)
        for entry in ready.committed_entries:
            machine.apply(entry)
        node.advance(ready)
        return True

    def process_all(self) -> None:
        for node_id in list(self.nodes):
            while self.process_ready(node_id):
                pass

    def deliverable(self, message: Message) -> bool:
        link = (message.from_id, message.to_id)
        return (
            message.to_id in self.nodes
            and message.to_id not in self.down
            and link not in self.cut_links
            and not self.drop(message)
        )

    def run(self) -> None:
        """Deliver messages and process Readies until nothing is left to do."""
        for _ in range(QUIET_ROUNDS_MAX):
            self.process_all()
            if not self.in_flight:
                return
            batch, self.in_flight = self.in_flight, deque()
            for message in batch:
                if self.deliverable(message):
                    self.delivered.append(message)
                    self.nodes[message.to_id].step(message)
        raise AssertionError(f"cluster still busy after {QUIET_ROUNDS_MAX} rounds")

    def tick(self, *node_ids: str, times: int = 1) -> None:
        """Tick the given nodes (all running nodes if none given), running after each."""
        targets = node_ids or tuple(self.nodes)
        for _ in range(times):
            for node_id in targets:
                if node_id not in self.down:
                    self.nodes[node_id].tick()
            self.run()

    def elect(self, node_id: str) -> RaftNode:
        """Make ``node_id`` campaign now and run the election to its end."""
        self.nodes[node_id].start_election(transfer=False)
        self.run()
        return self.nodes[node_id]

    def propose(self, node_id: str, key: str, value: str) -> int:
        """Propose ``set key value`` at ``node_id`` and run until quiet."""
        index = self.nodes[node_id].propose(KVStateMachine.command(key, value))
        self.run()
        return index

    def compact(self, node_id: str) -> Snapshot:
        """Snapshot ``node_id``'s state machine at its applied index."""
        machine = self.machines[node_id]
        snapshot = self.nodes[node_id].compact(machine.applied_index, machine.snapshot_data())
        self.stores[node_id].compacted(snapshot)
        return snapshot
