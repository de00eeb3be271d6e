"""What the leader knows about each follower's log, and how fast it may send to it.

Theory of operation
-------------------
The leader keeps one :class:`Progress` per member (voter or learner) other than
itself.  ``match`` is the highest index known to be on the follower's disk;
``next`` the next index to send.  A follower is in one of three states (etcd's
``tracker/progress.go``)::

              rejection / heartbeat answered
           +-------------------------------------+
           v                                     |
         PROBE  -- an append is acknowledged -> REPLICATE
           ^  \\                                  |
           |   \\ needed entries compacted        | rejection
           |    v                                 v
           |  SNAPSHOT  -- acknowledged at or past the snapshot --> (PROBE ->) REPLICATE
           |      |
           +------+  snapshot_timeout_ticks without an answer (the snapshot was lost)

* PROBE: the follower's log position is unknown.  One append at a time; the next
  waits for an answer or the next heartbeat answer.
* REPLICATE: the position is known; appends are pipelined optimistically, at most
  ``inflight_appends_max`` unacknowledged (``inflight`` holds their last indices).
* SNAPSHOT: a snapshot is on its way; nothing else is sent until it is confirmed.

``recent_active`` feeds CheckQuorum: set by any answer, cleared by the leader every
election timeout.
"""

from __future__ import annotations

import enum
from collections import deque


class ProgressState(enum.Enum):
    """How the leader replicates to one follower."""

    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Progress:
    """The leader's view of one follower."""

    __slots__ = (
        "inflight",
        "inflight_max",
        "match",
        "next",
        "pending_snapshot",
        "probe_sent",
        "recent_active",
        "snapshot_wait_ticks",
        "state",
    )

    def __init__(self, *, next_index: int, inflight_max: int) -> None:
        self.match = 0
        """Highest index known to be persisted by the follower."""
        self.next = next_index
        """Next index to send."""
        self.state = ProgressState.PROBE
        self.probe_sent = False
        """PROBE: an append is unanswered, so the next one waits."""
        self.inflight: deque[int] = deque()
        """REPLICATE: last index of each unacknowledged append, oldest first."""
        self.inflight_max = inflight_max
        self.pending_snapshot = 0
        """SNAPSHOT: index of the snapshot sent."""
        self.snapshot_wait_ticks = 0
        """SNAPSHOT: ticks left before the leader gives up waiting for it."""
        self.recent_active = True
        """Answered since the last CheckQuorum round (a new leader assumes yes)."""

    def __repr__(self) -> str:
        return (
            f"Progress({self.state.value}, match={self.match}, next={self.next},"
            f" inflight={len(self.inflight)})"
        )

    def is_paused(self) -> bool:
        """True when nothing more may be sent to this follower right now."""
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return len(self.inflight) >= self.inflight_max
        return True

    def become_probe(self) -> None:
        """Position unknown: probe from just after the last known match."""
        self.next = self.match + 1
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.inflight.clear()
        self.pending_snapshot = 0

    def become_replicate(self) -> None:
        """Position known: stream appends from just after the match."""
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflight.clear()

    def become_snapshot(self, snapshot_index: int, wait_ticks: int) -> None:
        """A snapshot at ``snapshot_index`` was sent; wait for it."""
        self.state = ProgressState.SNAPSHOT
        self.pending_snapshot = snapshot_index
        self.snapshot_wait_ticks = wait_ticks
        self.inflight.clear()

    def sent_append(self, last_index: int | None) -> None:
        """An append was sent; ``last_index`` is its last entry (None if empty)."""
        if self.state is ProgressState.REPLICATE:
            if last_index is not None:
                self.next = last_index + 1
                self.inflight.append(last_index)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True

    def maybe_update(self, index: int) -> bool:
        """The follower has everything up to ``index``; True if that is news."""
        updated = index > self.match
        if updated:
            self.match = index
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        while self.inflight and self.inflight[0] <= index:
            self.inflight.popleft()
        return updated

    def maybe_decrease_to(self, rejected: int, match_hint: int) -> bool:
        """The append after ``rejected`` was refused; False if that answer is stale."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def heartbeat_answered(self) -> None:
        """A heartbeat came back: probing may resume, one pipelined slot frees up."""
        self.recent_active = True
        self.probe_sent = False
        if self.state is ProgressState.REPLICATE and len(self.inflight) >= self.inflight_max:
            self.inflight.popleft()
