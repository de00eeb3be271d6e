"""The messages Raft nodes exchange, as immutable keyword-only dataclasses.

Theory of operation
-------------------
Every message carries the sender's ``term`` and both node ids; a receiver first
compares terms (Raft §5.1: a higher term makes it a follower of that term, a lower
one marks the message stale) and only then looks at the rest.

Replication (leader -> follower, answered by the follower):

* ``Append`` -> ``AppendResponse``: entries after (prev_index, prev_term) plus the
  leader's commit index.  A refusal names the refused ``prev_index`` and a hint
  (the follower's last entry at or below it with a term <= prev_term) so the leader
  skips a whole term per round trip.
* ``Heartbeat`` -> ``HeartbeatResponse``: keeps followers from campaigning and tells
  them the commit index (never beyond what that follower is known to hold).
* ``InstallSnapshot`` -> ``AppendResponse``: the entries the follower needs were
  compacted away, so it gets the snapshot instead.

Elections (candidate -> voter):

* ``RequestVote`` -> ``VoteResponse``, once with ``pre_vote=True`` (term not yet
  increased: "would you vote for me?") and then for real.  ``transfer`` marks the
  election a leader asked for, which voters hold even inside a leader lease.
* ``TimeoutNow``: the leader tells a caught-up voter to campaign at once.

The shell must check that ``from_id`` is the peer the message came from and that
``to_id`` is this node; the core refuses a wrong ``to_id``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias

from protocol.errors import RemoteProtocolError
from protocol.raft.conf import ConfChange
from protocol.raft.entries import Entry, EntryKind, Snapshot


class MessageType(enum.IntEnum):
    """Message type numbers on the wire.  Append only, never renumber."""

    APPEND = 1
    APPEND_RESPONSE = 2
    HEARTBEAT = 3
    HEARTBEAT_RESPONSE = 4
    REQUEST_VOTE = 5
    VOTE_RESPONSE = 6
    INSTALL_SNAPSHOT = 7
    TIMEOUT_NOW = 8


@dataclass(frozen=True, kw_only=True, slots=True)
class Append:
    """AppendEntries: entries after (prev_index, prev_term), and the commit index."""

    term: int
    """Leader's term."""
    from_id: str
    """The leader."""
    to_id: str
    """The follower."""
    prev_index: int
    """Index of the entry just before ``entries``."""
    prev_term: int
    """Term of that entry; the follower must hold it to accept (Raft §5.3)."""
    entries: tuple[Entry, ...]
    """Entries prev_index + 1, prev_index + 2, ...; may be empty."""
    commit: int
    """Leader's commit index."""


@dataclass(frozen=True, kw_only=True, slots=True)
class AppendResponse:
    """Answer to ``Append`` or ``InstallSnapshot``."""

    term: int
    """Follower's term."""
    from_id: str
    """The follower."""
    to_id: str
    """The leader."""
    index: int
    """Accepted: highest index now matching the leader.  Refused: the prev_index."""
    reject: bool
    """True when the follower lacks (prev_index, prev_term)."""
    reject_hint: int
    """Refused: last index at or below prev_index whose term <= prev_term; else 0."""
    hint_term: int
    """Refused: the term at ``reject_hint``; else 0."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Heartbeat:
    """The leader is alive; ``commit`` is at most what this follower is known to hold."""

    term: int
    from_id: str
    to_id: str
    commit: int
    """min(follower's match, leader's commit)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class HeartbeatResponse:
    """Answer to ``Heartbeat``: the follower is alive and still follows."""

    term: int
    from_id: str
    to_id: str


@dataclass(frozen=True, kw_only=True, slots=True)
class RequestVote:
    """A (pre-)candidate asks for a vote."""

    term: int
    """The term the candidate campaigns for (its term + 1 for a pre-vote)."""
    from_id: str
    """The candidate."""
    to_id: str
    """The voter."""
    last_index: int
    """Index of the candidate's last entry (Raft §5.4.1)."""
    last_term: int
    """Term of the candidate's last entry."""
    pre_vote: bool
    """True: a PreVote round, which changes no term and records no vote."""
    transfer: bool
    """True: the leader asked for this election, so leader leases do not apply."""


@dataclass(frozen=True, kw_only=True, slots=True)
class VoteResponse:
    """A voter's answer to ``RequestVote``."""

    term: int
    """Granted: the term asked for.  Refused: the voter's own term."""
    from_id: str
    to_id: str
    pre_vote: bool
    """Answers a pre-vote."""
    granted: bool
    """True: the vote is given."""


@dataclass(frozen=True, kw_only=True, slots=True)
class InstallSnapshot:
    """The leader's snapshot, for a follower that needs compacted entries."""

    term: int
    from_id: str
    to_id: str
    snapshot: Snapshot
    """State machine and configuration as of ``snapshot.index``."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TimeoutNow:
    """Leadership transfer: campaign now, without waiting or PreVote."""

    term: int
    from_id: str
    to_id: str


Message: TypeAlias = (
    Append
    | AppendResponse
    | Heartbeat
    | HeartbeatResponse
    | RequestVote
    | VoteResponse
    | InstallSnapshot
    | TimeoutNow
)
"""Any Raft message."""


def check_message(message: Message) -> None:
    """Raise ``RemoteProtocolError`` unless ``message`` is internally consistent.

    The codec checks types and ranges; this checks what relates fields to each other,
    so a message built in memory (tests, a future transport) is held to the same rules.
    """
    if message.from_id == message.to_id:
        raise RemoteProtocolError(f"{type(message).__name__} from {message.from_id!r} to itself")
    if isinstance(message, Append):
        _check_append(message)
    elif isinstance(message, InstallSnapshot):
        snapshot = message.snapshot
        if snapshot.index < 1 or snapshot.term > message.term:
            raise RemoteProtocolError(
                f"INSTALL_SNAPSHOT at index {snapshot.index}, term {snapshot.term} is"
                f" impossible in term {message.term}"
            )
        if not snapshot.conf.voters:
            raise RemoteProtocolError("INSTALL_SNAPSHOT: the configuration has no voters")
    elif isinstance(message, RequestVote) and message.last_term > message.term:
        raise RemoteProtocolError("REQUEST_VOTE: last_term is above the term asked for")


def _check_append(message: Append) -> None:
    if message.prev_term > message.term:
        raise RemoteProtocolError("APPEND: prev_term is above the leader's term")
    expected_index, previous_term = message.prev_index + 1, message.prev_term
    for entry in message.entries:
        if entry.index != expected_index:
            raise RemoteProtocolError(
                f"APPEND: entry index {entry.index} where {expected_index} was expected"
            )
        if not previous_term <= entry.term <= message.term:
            raise RemoteProtocolError(
                f"APPEND: entry {entry.index} has term {entry.term}, outside"
                f" [{previous_term}, {message.term}]"
            )
        if entry.kind is EntryKind.CONF_CHANGE:
            ConfChange.from_bytes(entry.data)
        expected_index, previous_term = expected_index + 1, entry.term
