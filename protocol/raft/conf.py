"""Cluster configuration: voters, learners, quorums and one-server-at-a-time changes.

Theory of operation
-------------------
A :class:`ConfState` names the *voters* (who elect leaders and whose acknowledgements
commit entries) and the *learners* (who receive every committed entry but never vote
and never count towards a quorum).  The two sets are disjoint.

Changes travel through the log as entries of kind ``CONF_CHANGE`` whose data is a
:class:`ConfChange`, and a node uses the configuration of its *committed* log prefix
(etcd applies changes the same way; see ``node.py`` for why this is safe).  Only one
change may be uncommitted at a time and each adds or removes a single voter, so the
majorities of any two consecutive configurations overlap (Raft thesis §4.1): two
nodes acting on neighbouring configurations can never elect two leaders in one term.

Applying a change is total and deterministic: every node applies the same entries to
the same configuration and gets the same result.  A change that does nothing (adding
an existing voter) is a no-op; the leader refuses such changes at proposal time, but a
replayed log must still apply cleanly.

Conf-change data on the wire and in the log: ``msgpack([kind, node_id])``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import msgpack

from protocol.errors import RemoteProtocolError
from protocol.wire import NODE_ID_CHARS_MAX

CONF_CHANGE_DATA_BYTES_MAX = 2 + NODE_ID_CHARS_MAX * 4 + 8
"""Upper bound of an encoded conf change (array header, kind, utf-8 node id)."""


class ConfChangeKind(enum.IntEnum):
    """What a change does.  Values are on the wire: append only, never renumber."""

    ADD_VOTER = 1
    """Make ``node_id`` a voter (adding it, or promoting a learner)."""
    ADD_LEARNER = 2
    """Make ``node_id`` a learner (adding it, or demoting a voter)."""
    REMOVE_NODE = 3
    """Remove ``node_id`` from the configuration, voter or learner."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ConfChange:
    """One membership change, carried by a ``CONF_CHANGE`` log entry."""

    kind: ConfChangeKind
    """What to do."""
    node_id: str
    """The node it is done to."""

    def __post_init__(self) -> None:
        if not isinstance(self.kind, ConfChangeKind):
            raise ValueError(f"kind must be a ConfChangeKind, got {self.kind!r}")
        check_node_id("node_id", self.node_id)

    def to_bytes(self) -> bytes:
        """The entry data of this change."""
        packed: bytes = msgpack.packb([int(self.kind), self.node_id], use_bin_type=True)
        return packed

    @classmethod
    def from_bytes(cls, data: bytes) -> ConfChange:
        """Parse entry data; raise ``RemoteProtocolError`` if it is not a conf change."""
        if len(data) > CONF_CHANGE_DATA_BYTES_MAX:
            raise RemoteProtocolError(f"conf change of {len(data)} bytes is too long")
        try:
            wire = msgpack.unpackb(data, use_list=False, raw=False, max_bin_len=0)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise RemoteProtocolError(f"malformed conf change: {exc}") from exc
        if not (isinstance(wire, tuple) and len(wire) == 2):
            raise RemoteProtocolError(f"conf change: expected [kind, node_id], got {wire!r}")
        kind, node_id = wire
        if isinstance(kind, bool) or not isinstance(kind, int):
            raise RemoteProtocolError(f"conf change kind: expected an int, got {kind!r}")
        try:
            return cls(kind=ConfChangeKind(kind), node_id=node_id)
        except ValueError as exc:
            raise RemoteProtocolError(f"conf change: {exc}") from exc


def check_node_id(where: str, node_id: object) -> None:
    """Raise ``ValueError`` unless ``node_id`` is a node id of 1 to 64 characters."""
    if not isinstance(node_id, str) or not 0 < len(node_id) <= NODE_ID_CHARS_MAX:
        raise ValueError(f"{where} must be a str of 1 to {NODE_ID_CHARS_MAX} chars: {node_id!r}")


class VoteResult(enum.Enum):
    """Outcome of an election so far."""

    PENDING = "pending"
    WON = "won"
    LOST = "lost"


@dataclass(frozen=True, kw_only=True, slots=True)
class ConfState:
    """Voters and learners of one configuration."""

    voters: frozenset[str] = frozenset()
    """Nodes that vote and count towards quorums."""
    learners: frozenset[str] = frozenset()
    """Nodes that receive committed entries but never vote."""

    def __post_init__(self) -> None:
        overlap = self.voters & self.learners
        if overlap:
            raise ValueError(f"nodes cannot be voter and learner at once: {sorted(overlap)}")

    @classmethod
    def of(cls, voters: Iterable[str], learners: Iterable[str] = ()) -> ConfState:
        """A configuration from any iterables of node ids (checked)."""
        conf = cls(voters=frozenset(voters), learners=frozenset(learners))
        for node_id in conf.members:
            check_node_id("member", node_id)
        return conf

    @property
    def members(self) -> frozenset[str]:
        """Voters and learners: everyone the leader replicates to."""
        return self.voters | self.learners

    @property
    def quorum(self) -> int:
        """Votes or acknowledgements needed: a strict majority of the voters."""
        return len(self.voters) // 2 + 1

    def apply(self, change: ConfChange) -> ConfState:
        """The configuration after ``change`` (total; a no-op change changes nothing)."""
        voters, learners = set(self.voters), set(self.learners)
        voters.discard(change.node_id)
        learners.discard(change.node_id)
        if change.kind is ConfChangeKind.ADD_VOTER:
            voters.add(change.node_id)
        elif change.kind is ConfChangeKind.ADD_LEARNER:
            learners.add(change.node_id)
        return ConfState(voters=frozenset(voters), learners=frozenset(learners))

    def committed_index(self, match_index: Mapping[str, int]) -> int:
        """Highest index stored by a quorum of voters (0 when there are no voters)."""
        if not self.voters:
            return 0
        matched = sorted((match_index.get(v, 0) for v in self.voters), reverse=True)
        return matched[self.quorum - 1]

    def vote_result(self, votes: Mapping[str, bool]) -> VoteResult:
        """Whether ``votes`` (voter -> granted) already decide an election."""
        granted = sum(1 for v in self.voters if votes.get(v) is True)
        rejected = sum(1 for v in self.voters if votes.get(v) is False)
        if granted >= self.quorum:
            return VoteResult.WON
        if rejected > len(self.voters) - self.quorum:
            return VoteResult.LOST
        return VoteResult.PENDING

    def has_active_quorum(self, active: Iterable[str]) -> bool:
        """True when the voters among ``active`` form a quorum (CheckQuorum)."""
        return len(self.voters.intersection(active)) >= self.quorum
