"""Log entries, snapshots and the state a node persists, as immutable values.

Theory of operation
-------------------
A Raft log is a snapshot followed by entries.  The :class:`Snapshot` stands in for
every entry up to and including ``snapshot.index`` (its ``term`` is that entry's
term, its ``conf`` the configuration committed there, its ``data`` the state machine
at that point).  A fresh node's snapshot is the empty one: index 0, term 0, no
members.

What survives a crash is a :class:`PersistentState`: the :class:`HardState` (current
term, vote, commit index), the snapshot and the entries after it.  The shell builds it
from what it wrote while processing ``Ready`` objects and hands it back to
``RaftNode`` on restart; :func:`check_persistent_state` rejects anything inconsistent
with ``LocalProtocolError`` (the shell's storage lied, not a peer).

A new cluster starts from :func:`bootstrap_state`: every founding member gets the same
snapshot at index 1, term 1, holding the initial configuration.  A node that joins
later starts with ``None`` (empty log, no configuration); the leader's first probe of
index 0 then finds that entry compacted and sends it the snapshot, so the joiner
learns the configuration before any entry.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from protocol.errors import LocalProtocolError
from protocol.raft.conf import ConfState

BOOTSTRAP_INDEX = 1
"""Index of the snapshot that founds a cluster."""
BOOTSTRAP_TERM = 1
"""Term of that snapshot; the first election is for term 2."""


class EntryKind(enum.IntEnum):
    """What an entry carries.  Values are on the wire: append only, never renumber."""

    NORMAL = 1
    """Opaque data for the replicated state machine (empty: a new leader's no-op)."""
    CONF_CHANGE = 2
    """A :class:`~protocol.raft.conf.ConfChange`, applied by the core when committed."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Entry:
    """One log entry."""

    index: int
    """Position in the log, from 1."""
    term: int
    """Term of the leader that created it."""
    kind: EntryKind
    """NORMAL data or a CONF_CHANGE."""
    data: bytes
    """The proposal; empty for a leader's no-op."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Snapshot:
    """The state machine and configuration as of ``index``; replaces entries <= index."""

    index: int
    """Last entry the snapshot covers."""
    term: int
    """Term of that entry."""
    conf: ConfState
    """Configuration committed at ``index``."""
    data: bytes
    """State machine contents, opaque to the core."""


EMPTY_SNAPSHOT = Snapshot(index=0, term=0, conf=ConfState(), data=b"")
"""The snapshot of a node that has never been part of a cluster."""


@dataclass(frozen=True, kw_only=True, slots=True)
class HardState:
    """What must be on disk before any message of the same ``Ready`` is sent."""

    term: int
    """Current term: never goes back, or a node could vote twice in one term."""
    vote: str | None
    """Candidate voted for in ``term`` (None: no vote yet)."""
    commit: int
    """Highest index known committed (may lag after restart; never wrong)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PersistentState:
    """Everything a node persisted; what ``RaftNode`` restarts from."""

    hard_state: HardState
    """Term, vote and commit index."""
    snapshot: Snapshot
    """Latest snapshot persisted (``EMPTY_SNAPSHOT`` if none)."""
    entries: tuple[Entry, ...]
    """Entries after ``snapshot.index``, contiguous."""


def bootstrap_state(
    voters: Iterable[str], learners: Iterable[str] = (), data: bytes = b""
) -> PersistentState:
    """The identical starting state of every founding member of a new cluster."""
    conf = ConfState.of(voters, learners)
    if not conf.voters:
        raise LocalProtocolError("a cluster needs at least one voter to start")
    snapshot = Snapshot(index=BOOTSTRAP_INDEX, term=BOOTSTRAP_TERM, conf=conf, data=data)
    return PersistentState(
        hard_state=HardState(term=BOOTSTRAP_TERM, vote=None, commit=BOOTSTRAP_INDEX),
        snapshot=snapshot,
        entries=(),
    )


def check_persistent_state(state: PersistentState) -> None:
    """Raise ``LocalProtocolError`` unless ``state`` could have come from this core."""
    hard, snapshot = state.hard_state, state.snapshot
    expected_index = snapshot.index + 1
    previous_term = snapshot.term
    for entry in state.entries:
        if entry.index != expected_index:
            raise LocalProtocolError(
                f"persisted entries are not contiguous: expected index {expected_index},"
                f" found {entry.index}"
            )
        if entry.term < previous_term:
            raise LocalProtocolError(f"persisted entry {entry.index} has a decreasing term")
        expected_index += 1
        previous_term = entry.term
    if previous_term > hard.term:
        raise LocalProtocolError(
            f"persisted log holds term {previous_term} above the current term {hard.term}"
        )
    # A commit below the snapshot is harmless (a snapshot only holds committed state:
    # the core reads it as snapshot.index); one beyond the log would be a lie.
    if hard.commit > expected_index - 1:
        raise LocalProtocolError(
            f"persisted commit {hard.commit} is beyond the last entry {expected_index - 1}"
        )
