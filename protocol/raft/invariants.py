"""Raft's safety properties (figure 3 of the paper), checked while a cluster runs.

Theory of operation
-------------------
:class:`SafetyChecker` watches nodes after every input and every state machine after
every apply, and raises :class:`InvariantViolation` the moment one of these breaks:

* **Election Safety**: at most one leader per term (``leader_of_term``).
* **Log Matching / Leader Append-Only / committed entries never change**: the first
  time any node knows index ``i`` committed (and holds it on disk), its entry is
  recorded; every node that later knows ``i`` committed must hold the same entry.
  The core refuses to truncate a committed entry (``RemoteProtocolError``), so a
  violation surfaces as an error.
* **Leader Completeness**: a node that becomes leader in term ``T`` holds every
  entry known committed by a node whose term was below ``T`` (a node of term ``t``
  only learns of commits made by leaders of terms <= ``t``).
* **State Machine Safety**: every state machine applies, at each index, the same
  entry, and reaches the same state (compared as a digest); a snapshot installs the
  state every other node had at its index.

Checks are incremental (each node's committed prefix is verified once) so they can
run after every single step of a long simulation.
"""

from __future__ import annotations

from collections.abc import Hashable

from protocol.raft.entries import Entry, Snapshot
from protocol.raft.node import RaftNode
from protocol.raft.roles import Role


class InvariantViolation(AssertionError):
    """A Raft safety property was broken."""


class SafetyChecker:
    """Incremental checks of the figure-3 properties over one cluster run."""

    def __init__(self) -> None:
        self.leader_of_term: dict[int, str] = {}
        self.committed: dict[int, Entry] = {}
        """index -> the entry committed there, as first seen."""
        self.commit_seen_in_term: dict[int, int] = {}
        """index -> lowest term of a node that knew it committed."""
        self.digest_at: dict[int, Hashable] = {}
        """index -> state machine digest after applying it."""
        self._verified: dict[str, int] = {}
        self._was_leader: dict[str, tuple[int, bool]] = {}

    def fail(self, what: str) -> InvariantViolation:
        return InvariantViolation(what)

    def check_node(self, node: RaftNode) -> None:
        """After any input to ``node``."""
        is_leader = node.role is Role.LEADER
        if is_leader:
            holder = self.leader_of_term.setdefault(node.term, node.id)
            if holder != node.id:
                raise self.fail(f"two leaders in term {node.term}: {holder} and {node.id}")
            if self._was_leader.get(node.id) != (node.term, True):
                self._check_leader_completeness(node)
        self._was_leader[node.id] = (node.term, is_leader)
        self._check_committed_prefix(node)

    def _check_committed_prefix(self, node: RaftNode) -> None:
        log = node.log
        # A lone voter commits in memory before its disk has the entry; until the shell
        # persists it, a crash may take both and nobody ever saw either.
        committed = min(log.committed, log.stable_index)
        start = min(self._verified.get(node.id, 0), committed)
        start = max(start, log.snapshot.index)
        for index in range(start + 1, committed + 1):
            entry = log.entry(index)
            known = self.committed.setdefault(index, entry)
            if known != entry:
                raise self.fail(
                    f"committed entry {index} differs: {node.id} holds {entry},"
                    f" first seen committed as {known}"
                )
            seen = self.commit_seen_in_term.get(index)
            if seen is None or node.term < seen:
                self.commit_seen_in_term[index] = node.term
        self._verified[node.id] = committed

    def _check_leader_completeness(self, node: RaftNode) -> None:
        log = node.log
        for index, entry in self.committed.items():
            if self.commit_seen_in_term[index] >= node.term or index <= log.snapshot.index:
                continue
            if index > log.last_index or log.entry(index) != entry:
                raise self.fail(
                    f"leader {node.id} of term {node.term} lacks committed entry {index} ({entry})"
                )

    def check_apply(self, node_id: str, entry: Entry, digest: Hashable) -> None:
        """After a state machine applied ``entry`` and reached ``digest``."""
        known = self.committed.get(entry.index)
        if known is not None and known != entry:
            raise self.fail(f"{node_id} applied {entry} where {known} was committed")
        expected = self.digest_at.setdefault(entry.index, digest)
        if expected != digest:
            raise self.fail(f"state machine of {node_id} diverged at index {entry.index}")

    def check_install(self, node_id: str, snapshot: Snapshot, digest: Hashable) -> None:
        """After a state machine installed ``snapshot`` and reached ``digest``."""
        expected = self.digest_at.setdefault(snapshot.index, digest)
        if expected != digest:
            raise self.fail(
                f"snapshot installed by {node_id} at {snapshot.index} differs from the"
                f" state machines that applied up to there"
            )

    def check_final_log(self, node: RaftNode) -> None:
        """At the end of a run: every committed entry still held is unchanged."""
        log = node.log
        for index in range(log.first_index, min(log.last_index, log.committed) + 1):
            known = self.committed.get(index)
            if known is not None and log.entry(index) != known:
                raise self.fail(f"{node.id} holds {log.entry(index)} where {known} was committed")
