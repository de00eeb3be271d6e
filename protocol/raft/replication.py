"""Log replication, commitment and snapshots (Raft §5.3, §5.4.2, §7).

Theory of operation
-------------------
Leader side.  For each follower the leader keeps a :class:`Progress` and sends
``Append`` messages carrying the entries after (prev_index, prev_term).  An accepted
append raises the follower's ``match``; a refused one moves ``next`` back, a whole term
at a time using the follower's hint.  When the entries a follower needs were compacted
away, the leader sends its snapshot instead.  An entry is committed once a quorum of
voters holds it *and* it belongs to the leader's current term; committing it commits
everything before it (§5.4.2, figure 8: counting replicas of an older-term entry is
not enough).  Learners receive everything but are never counted.

Heartbeats go out every ``heartbeat_ticks``; an answer marks the follower active for
CheckQuorum and, if it lags, triggers another append (which is how lost appends are
retried).  Every ``election_ticks`` the leader checks that a quorum of voters answered
since the last check, or steps down.

Follower side.  An append is accepted only if the log holds (prev_index, prev_term)
(the Log Matching check); then conflicting entries and everything after them are
replaced, matching entries are kept (so stale, duplicated or reordered appends never
shorten the log), and the commit index follows the leader's up to the last new entry.
A snapshot newer than the commit index replaces the log, unless the log already holds
its last entry, in which case the commit index simply moves up to it.
"""

from __future__ import annotations

from protocol.errors import RemoteProtocolError
from protocol.raft.core import NodeCore
from protocol.raft.messages import (
    Append,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    TimeoutNow,
)
from protocol.raft.progress import Progress, ProgressState
from protocol.raft.roles import Role, Trigger


class Replication(NodeCore):
    """The replication half of a Raft node."""

    # ------------------------------------------------------------ leader: sending

    def send_append(self, to: str, *, send_if_empty: bool = True) -> bool:
        """Send ``to`` what it lacks, if its progress allows; True if something went."""
        progress = self.progress.get(to)
        if progress is None or progress.is_paused():
            return False
        prev_index = progress.next - 1
        prev_term = self.log.term(prev_index)
        entries = self.log.entries_from(
            progress.next, self.config.append_entries_max, self.config.append_bytes_max
        )
        if prev_term is None or entries is None:
            return self._send_snapshot(to, progress)
        if not entries and not send_if_empty:
            return False
        self.send(
            Append(
                term=self.term,
                from_id=self.id,
                to_id=to,
                prev_index=prev_index,
                prev_term=prev_term,
                entries=tuple(entries),
                commit=self.log.committed,
            )
        )
        progress.sent_append(entries[-1].index if entries else None)
        return True

    def _send_snapshot(self, to: str, progress: Progress) -> bool:
        if not progress.recent_active:
            return False  # no point shipping a snapshot to a node that does not answer
        snapshot = self.log.snapshot
        self.send(InstallSnapshot(term=self.term, from_id=self.id, to_id=to, snapshot=snapshot))
        progress.become_snapshot(snapshot.index, self.config.snapshot_timeout_ticks)
        return True

    def broadcast_append(self) -> None:
        """Leader: send every member what it lacks (at least a commit-bearing append)."""
        if self.role is not Role.LEADER:
            return
        for node_id in self.progress:
            self.send_append(node_id)

    def broadcast_new_entries(self) -> None:
        """Leader: send freshly proposed entries to every member not paused."""
        for node_id in self.progress:
            self.send_append(node_id, send_if_empty=False)

    def broadcast_heartbeat(self) -> None:
        for node_id, progress in self.progress.items():
            commit = min(progress.match, self.log.committed)
            self.send(Heartbeat(term=self.term, from_id=self.id, to_id=node_id, commit=commit))

    def tick_leader(self) -> None:
        """Leader: heartbeats, CheckQuorum, transfer timeout, snapshot timeouts."""
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.config.election_ticks:
            self.election_elapsed = 0
            removed = self.id not in self.conf.voters
            if self.config.check_quorum and not removed:
                active = {n for n, p in self.progress.items() if p.recent_active} | {self.id}
                if not self.conf.has_active_quorum(active):
                    self.become_follower(self.term, None, Trigger.QUORUM_LOST)
                    return
                for progress in self.progress.values():
                    progress.recent_active = False
            self.transferee = None  # a transfer gets one election timeout
            if removed:
                self.hand_over()
        for progress in self.progress.values():
            if progress.state is ProgressState.SNAPSHOT:
                progress.snapshot_wait_ticks -= 1
                if progress.snapshot_wait_ticks <= 0:
                    progress.become_probe()
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            self.broadcast_heartbeat()

    def begin_transfer(self, target: str) -> None:
        """Leader: hand over to ``target`` as soon as it holds our whole log."""
        self.transferee = target
        if self.progress[target].match == self.log.last_index:
            self.send(TimeoutNow(term=self.term, from_id=self.id, to_id=target))
        else:
            self.send_append(target)

    def hand_over(self) -> None:
        """Leader no longer a voter: transfer to the most caught-up voter."""
        voters = [n for n in self.progress if n in self.conf.voters]
        if voters:
            self.begin_transfer(max(voters, key=lambda n: (self.progress[n].match, n)))

    # ------------------------------------------------------------ leader: answers

    def handle_append_response(self, message: AppendResponse) -> None:
        progress = self.progress.get(message.from_id)
        if progress is None:
            return
        if message.index > self.log.last_index:
            raise RemoteProtocolError(
                f"APPEND_RESPONSE claims index {message.index} beyond the leader's"
                f" last entry {self.log.last_index}"
            )
        progress.recent_active = True
        if message.reject:
            self._handle_rejection(message, progress)
            return
        was_paused = progress.is_paused()
        if not progress.maybe_update(message.index):
            return
        snapshot_done = (
            progress.state is ProgressState.SNAPSHOT and progress.match >= progress.pending_snapshot
        )
        if progress.state is ProgressState.PROBE or snapshot_done:
            progress.become_replicate()
        if self.maybe_commit():
            self.broadcast_append()
        elif was_paused:
            self.send_append(message.from_id)
        if self.role is not Role.LEADER:
            return  # the commit removed this leader from the configuration
        while self.send_append(message.from_id, send_if_empty=False):
            pass
        if message.from_id == self.transferee and progress.match == self.log.last_index:
            self.send(TimeoutNow(term=self.term, from_id=self.id, to_id=message.from_id))

    def _handle_rejection(self, message: AppendResponse, progress: Progress) -> None:
        next_probe = message.reject_hint
        if message.hint_term > 0:
            next_probe, _ = self.log.find_conflict_by_term(message.reject_hint, message.hint_term)
        if progress.maybe_decrease_to(message.index, next_probe):
            if progress.state is ProgressState.REPLICATE:
                progress.become_probe()
            self.send_append(message.from_id)

    def handle_heartbeat_response(self, message: HeartbeatResponse) -> None:
        progress = self.progress.get(message.from_id)
        if progress is None:
            return
        progress.heartbeat_answered()
        if progress.match < self.log.last_index:
            self.send_append(message.from_id)

    # ------------------------------------------------------------ follower

    def _respond(self, to: str, index: int, *, reject_hint: int = -1, hint_term: int = 0) -> None:
        self.send(
            AppendResponse(
                term=self.term,
                from_id=self.id,
                to_id=to,
                index=index,
                reject=reject_hint >= 0,
                reject_hint=max(reject_hint, 0),
                hint_term=hint_term,
            )
        )

    def handle_append(self, message: Append) -> None:
        if message.prev_index < self.log.committed:
            self._respond(message.from_id, self.log.committed)
            return
        if self.log.maybe_append(message.prev_index, message.prev_term, message.entries):
            last_new = message.prev_index + len(message.entries)
            self.commit_to(min(message.commit, last_new))
            self._respond(message.from_id, last_new)
            return
        hint_index = min(message.prev_index, self.log.last_index)
        hint_index, hint_term = self.log.find_conflict_by_term(hint_index, message.prev_term)
        self._respond(
            message.from_id, message.prev_index, reject_hint=hint_index, hint_term=hint_term
        )

    def handle_heartbeat(self, message: Heartbeat) -> None:
        self.commit_to(message.commit)
        self.send(HeartbeatResponse(term=self.term, from_id=self.id, to_id=message.from_id))

    def handle_snapshot(self, message: InstallSnapshot) -> None:
        snapshot = message.snapshot
        if snapshot.index <= self.log.committed:
            pass
        elif self.log.match_term(snapshot.index, snapshot.term):
            self.commit_to(snapshot.index)
        else:
            self.log.restore(snapshot)
            self.conf = snapshot.conf
        self._respond(message.from_id, self.log.committed)
