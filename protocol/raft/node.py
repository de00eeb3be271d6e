"""The sans-I/O Raft node: inputs in, a ``Ready`` out (etcd-io/raft's RawNode).

Theory of operation
-------------------
:class:`RaftNode` is driven like etcd-raft or h11: the caller owns the clock, the
disk, the network and the randomness (injected), and feeds inputs:

==================================  =================================================
``step(message)``                   a message from a peer; an impossible one raises
                                    ``RemoteProtocolError`` before any state changes
``tick()``                          one logical tick (the shell calls it every
                                    ``TICK_INTERVAL_S_DEFAULT``)
``propose(data)``                   leader: append an entry; returns its index
``propose_conf_change(change)``     leader: add/remove one voter or learner
``transfer_leadership(target)``     leader: hand leadership to a caught-up voter
``compact(index, data)``            replace applied entries with a snapshot
==================================  =================================================

then drains the output with ``has_ready()`` / ``ready()`` and acknowledges it with
``advance(ready)`` once it has persisted, sent and applied it (see ``ready.py`` for
the order, which is what makes the whole thing crash-safe).

Step begins with the term rules of Raft §5.1: a message of a higher term makes this
node a follower of that term (except pre-votes, which change nothing, and vote
requests inside a leader lease, which are ignored); a message of a lower term is
stale and ignored, except that a stale leader is answered with our term so it
steps down, and a stale pre-candidate is told our term.

A proposal is committed when a committed entry at the returned index carries the
term the leader had when proposing (``node.term``); if leadership changes first, the
entry may be replaced and the shell should retry.
"""

from __future__ import annotations

from random import Random

from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.raft.conf import ConfChange
from protocol.raft.config import ENTRY_DATA_BYTES_MAX, RaftConfig
from protocol.raft.election import Election
from protocol.raft.entries import Entry, EntryKind, PersistentState, Snapshot
from protocol.raft.errors import (
    ConfChangeInProgress,
    LeaderTransferInProgress,
    NotLeader,
    UncommittedBacklogFull,
)
from protocol.raft.messages import (
    Append,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    RequestVote,
    TimeoutNow,
    VoteResponse,
    check_message,
)
from protocol.raft.ready import Ready
from protocol.raft.replication import Replication
from protocol.raft.roles import Role, Trigger


class RaftNode(Election, Replication):
    """One Raft participant.  Read its attributes freely; change it only via methods."""

    def __init__(
        self,
        node_id: str,
        config: RaftConfig,
        storage_state: PersistentState | None,
        rng: Random,
    ) -> None:
        super().__init__(node_id, config, storage_state, rng)

    def __repr__(self) -> str:
        return (
            f"RaftNode({self.id!r}, {self.role.value}, term={self.term},"
            f" last={self.log.last_index}, commit={self.log.committed})"
        )

    # ------------------------------------------------------------------ inputs

    def tick(self) -> None:
        """One logical tick of the election or heartbeat timer."""
        if self.role is Role.LEADER:
            self.tick_leader()
        else:
            self.tick_election()

    def step(self, message: Message) -> None:
        """Handle one message from a peer."""
        check_message(message)
        if message.to_id != self.id:
            raise RemoteProtocolError(f"message for {message.to_id!r} delivered to {self.id!r}")
        if message.term > self.term:
            if not self._accept_higher_term(message):
                return
        elif message.term < self.term:
            self._answer_stale(message)
            return
        self._dispatch(message)

    def _accept_higher_term(self, message: Message) -> bool:
        """Term rules for a higher term; False if the message is to be ignored."""
        if isinstance(message, RequestVote):
            if self.in_lease() and not message.transfer:
                return False  # a leader is alive: do not let a newcomer disrupt it
            if message.pre_vote:
                return True  # a pre-vote changes no term
        elif isinstance(message, VoteResponse) and message.pre_vote and message.granted:
            return True  # a granted pre-vote carries the term we would campaign for
        from_leader = isinstance(message, (Append, Heartbeat, InstallSnapshot))
        leader = message.from_id if from_leader else None
        self.become_follower(message.term, leader, Trigger.HIGHER_TERM)
        return True

    def _answer_stale(self, message: Message) -> None:
        lease_or_pre_vote = self.config.check_quorum or self.config.pre_vote
        if lease_or_pre_vote and isinstance(message, (Append, Heartbeat)):
            # A leader cut off while we moved on (and, with leases or PreVote, could
            # not learn our term from a vote request): our term makes it step down.
            self._respond(message.from_id, 0)
            return
        if isinstance(message, RequestVote) and message.pre_vote:
            self.send(
                VoteResponse(
                    term=self.term,
                    from_id=self.id,
                    to_id=message.from_id,
                    pre_vote=True,
                    granted=False,
                )
            )

    def _dispatch(self, message: Message) -> None:
        if isinstance(message, RequestVote):
            self.handle_request_vote(message)
        elif isinstance(message, VoteResponse):
            self.handle_vote_response(message)
        elif isinstance(message, (Append, Heartbeat, InstallSnapshot)):
            self._from_leader(message)
        elif isinstance(message, AppendResponse):
            if self.role is Role.LEADER:
                self.handle_append_response(message)
        elif isinstance(message, HeartbeatResponse):
            if self.role is Role.LEADER:
                self.handle_heartbeat_response(message)
        elif isinstance(message, TimeoutNow):
            self.handle_timeout_now(message)

    def _from_leader(self, message: Append | Heartbeat | InstallSnapshot) -> None:
        if self.role is Role.LEADER:
            return  # one leader per term: this cannot be from a legitimate peer
        if self.role is not Role.FOLLOWER:
            self.become_follower(self.term, message.from_id, Trigger.LEADER_HEARD)
        self.election_elapsed = 0
        self.leader_id = message.from_id
        if isinstance(message, Append):
            self.handle_append(message)
        elif isinstance(message, Heartbeat):
            self.handle_heartbeat(message)
        else:
            self.handle_snapshot(message)

    # ------------------------------------------------------------------ proposals

    def _check_can_propose(self) -> None:
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader_id)
        if self.transferee is not None:
            raise LeaderTransferInProgress(
                f"leadership is being transferred to {self.transferee!r}"
            )
        if self.leaving():
            raise LeaderTransferInProgress(
                "this leader is leaving the voters; leadership will move"
            )

    def propose(self, data: bytes) -> int:
        """Leader: append ``data`` to the log; return its index (see module docstring)."""
        if not isinstance(data, bytes) or len(data) > ENTRY_DATA_BYTES_MAX:
            raise LocalProtocolError(f"a proposal is bytes of at most {ENTRY_DATA_BYTES_MAX}")
        self._check_can_propose()
        if self.uncommitted_bytes and (
            self.uncommitted_bytes + len(data) > self.config.uncommitted_bytes_max
        ):
            raise UncommittedBacklogFull(
                f"{self.uncommitted_bytes} bytes are uncommitted; the limit is"
                f" {self.config.uncommitted_bytes_max}"
            )
        return self._append_entry(EntryKind.NORMAL, data)

    def propose_conf_change(self, change: ConfChange) -> int:
        """Leader: add or remove one voter or learner; return the entry's index."""
        self._check_can_propose()
        if self.log.committed < self.pending_conf_index:
            raise ConfChangeInProgress(
                f"the change at index {self.pending_conf_index} is not committed yet"
                f" (commit index {self.log.committed})"
            )
        new_conf = self.conf.apply(change)
        if new_conf == self.conf:
            raise LocalProtocolError(f"{change} changes nothing")
        if not new_conf.voters:
            raise LocalProtocolError(f"{change} would leave the cluster without voters")
        index = self._append_entry(EntryKind.CONF_CHANGE, change.to_bytes())
        self.pending_conf_index = index
        return index

    def _append_entry(self, kind: EntryKind, data: bytes) -> int:
        index = self.log.last_index + 1
        self.log.append([Entry(index=index, term=self.term, kind=kind, data=data)])
        self.uncommitted_bytes += len(data)
        if self.maybe_commit():  # a single voter commits at once
            self.broadcast_append()
        else:
            self.broadcast_new_entries()
        return index

    def transfer_leadership(self, target: str) -> None:
        """Leader: hand leadership to voter ``target`` once it has caught up.

        Proposals are refused meanwhile; the transfer is abandoned after an election
        timeout.  Transferring to this node itself does nothing.
        """
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader_id)
        if target == self.id or target == self.transferee:
            return
        if target not in self.conf.voters:
            raise LocalProtocolError(f"cannot transfer leadership to {target!r}: not a voter")
        self.election_elapsed = 0  # the transfer must finish within one election timeout
        self.begin_transfer(target)

    def compact(self, index: int, data: bytes) -> Snapshot:
        """Replace entries up to applied ``index`` by a snapshot holding ``data``.

        ``data`` must be the state machine exactly as of ``index``.  Returns the
        snapshot for the shell to persist (then it may drop durable entries <= index).
        """
        if index <= self.log.snapshot.index:
            raise LocalProtocolError(
                f"index {index} is already compacted (snapshot at {self.log.snapshot.index})"
            )
        if index > self.log.applied:
            raise LocalProtocolError(
                f"cannot compact to {index}: only {self.log.applied} is applied"
            )
        term = self.log.term(index)
        if term is None:
            raise LocalProtocolError(f"entry {index} is not in the log")
        snapshot = Snapshot(index=index, term=term, conf=self.conf_at(index), data=data)
        self.log.compact(snapshot)
        return snapshot

    # ------------------------------------------------------------------ output

    def has_ready(self) -> bool:
        """True when ``ready()`` would hand out work (and none is outstanding)."""
        if self._outstanding is not None:
            return False
        log = self.log
        apply_after = log.applied
        if log.unstable_snapshot is not None:
            apply_after = max(apply_after, log.unstable_snapshot.index)
        return bool(
            self._messages
            or log.stable_index < log.last_index
            or log.unstable_snapshot is not None
            or log.committed > apply_after
            or self.hard_state() != self._prev_hard_state
            or self.soft_state() != self._prev_soft_state
        )

    def ready(self) -> Ready:
        """Everything to persist, send and apply now; acknowledge with ``advance``."""
        if self._outstanding is not None:
            raise LocalProtocolError("ready() called again before advance()")
        hard, soft = self.hard_state(), self.soft_state()
        ready = Ready(
            hard_state=hard if hard != self._prev_hard_state else None,
            entries=tuple(self.log.unstable_entries()),
            snapshot=self.log.unstable_snapshot,
            messages=tuple(self._messages),
            committed_entries=tuple(self.log.entries_to_apply()),
            soft_state=soft if soft != self._prev_soft_state else None,
        )
        self._messages = []
        self._prev_hard_state, self._prev_soft_state = hard, soft
        self._outstanding = ready
        return ready

    def advance(self, ready: Ready) -> None:
        """The shell persisted, sent and applied ``ready``."""
        if ready is not self._outstanding:
            raise LocalProtocolError("advance() with a Ready that is not the outstanding one")
        self._outstanding = None
        if ready.snapshot is not None:
            self.log.snapshot_stable(ready.snapshot)
        if ready.entries:
            last = ready.entries[-1]
            self.log.stable_to(last.index, last.term)
        if ready.committed_entries:
            self.log.applied_to(ready.committed_entries[-1].index)
