"""Raft consensus as a pure, sans-I/O core (after etcd-io/raft).

PreVote and CheckQuorum, log replication and commitment, snapshots and compaction,
one-server-at-a-time membership changes, leadership transfer, and non-voting learners.

One concept per module:

=================  ==============================================================
``node``           :class:`RaftNode`: inputs, ``Ready`` out, ``advance`` (start here)
``core``           the state every node keeps, role changes, commit and conf apply
``election``       PreVote, votes, leader lease, leadership transfer
``replication``    appends, heartbeats, snapshots, commit rule, CheckQuorum
``roles``          the four roles and the transition table
``log``            the in-memory log and its persist / commit / apply cursors
``progress``       the leader's view of each follower and its flow control
``conf``           voters, learners, quorums and :class:`ConfChange`
``entries``        entries, snapshots, hard state, what survives a restart
``ready``          :class:`Ready` and the order the shell must process it in
``messages``       the wire messages and :class:`MessageType`
``codec``          the versioned msgpack wire format
``config``         :class:`RaftConfig`: ticks, flags, limits, presets
``errors``         why a request was refused, and whose fault it was
``voters``         choosing the voters among the members (autopilot-style)
``testing``        a scripted in-memory cluster and a tiny KV state machine
``simulation``     the seeded randomized fault simulator (VOPR style)
``simnet``         its fake network: loss, duplication, delay, partitions
``invariants``     figure-3 safety properties, checked after every step
=================  ==============================================================
"""

from __future__ import annotations

from protocol.raft.codec import decode, encode
from protocol.raft.conf import ConfChange, ConfChangeKind, ConfState
from protocol.raft.config import TICK_INTERVAL_S_DEFAULT, TICK_INTERVAL_S_WAN, RaftConfig
from protocol.raft.entries import (
    Entry,
    EntryKind,
    HardState,
    PersistentState,
    Snapshot,
    bootstrap_state,
)
from protocol.raft.errors import (
    ConfChangeInProgress,
    LeaderTransferInProgress,
    NotLeader,
    ProposalRefused,
    UncommittedBacklogFull,
)
from protocol.raft.messages import (
    Append,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    MessageType,
    RequestVote,
    TimeoutNow,
    VoteResponse,
)
from protocol.raft.node import RaftNode
from protocol.raft.ready import Ready, SoftState
from protocol.raft.roles import Role
from protocol.raft.voters import CandidateInfo, VoterPlan, choose_voters

__all__ = [
    "TICK_INTERVAL_S_DEFAULT",
    "TICK_INTERVAL_S_WAN",
    "Append",
    "AppendResponse",
    "CandidateInfo",
    "ConfChange",
    "ConfChangeInProgress",
    "ConfChangeKind",
    "ConfState",
    "Entry",
    "EntryKind",
    "HardState",
    "Heartbeat",
    "HeartbeatResponse",
    "InstallSnapshot",
    "LeaderTransferInProgress",
    "Message",
    "MessageType",
    "NotLeader",
    "PersistentState",
    "ProposalRefused",
    "RaftConfig",
    "RaftNode",
    "Ready",
    "RequestVote",
    "Role",
    "Snapshot",
    "SoftState",
    "TimeoutNow",
    "UncommittedBacklogFull",
    "VoteResponse",
    "VoterPlan",
    "bootstrap_state",
    "choose_voters",
    "decode",
    "encode",
]
