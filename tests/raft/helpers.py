"""Small builders for driving single Raft nodes by hand in the unit tests."""

from __future__ import annotations

from collections.abc import Sequence
from random import Random
from typing import TypeVar

from protocol.raft.config import RaftConfig
from protocol.raft.entries import (
    Entry,
    EntryKind,
    HardState,
    PersistentState,
    bootstrap_state,
)
from protocol.raft.messages import Message, VoteResponse
from protocol.raft.node import RaftNode
from protocol.raft.roles import Role
from protocol.raft.testing import KVStateMachine, fast_config

M = TypeVar("M")

VOTERS_3 = ("a", "b", "c")
VOTERS_5 = ("a", "b", "c", "d", "e")


def persistent(
    voters: Sequence[str],
    terms: Sequence[int] = (),
    *,
    term: int | None = None,
    vote: str | None = None,
    commit: int = 1,
    learners: Sequence[str] = (),
) -> PersistentState:
    """A log whose index 1 is the bootstrap snapshot (term 1) and whose entries from
    index 2 on have ``terms``; each entry sets key ``i<index>`` to ``t<term>``."""
    base = bootstrap_state(voters, learners)
    entries = tuple(
        Entry(index=i, term=t, kind=EntryKind.NORMAL, data=KVStateMachine.command(f"i{i}", f"t{t}"))
        for i, t in enumerate(terms, start=2)
    )
    last_term = entries[-1].term if entries else 1
    return PersistentState(
        hard_state=HardState(term=max(term or 1, last_term), vote=vote, commit=commit),
        snapshot=base.snapshot,
        entries=entries,
    )


def make_node(
    node_id: str = "a",
    voters: Sequence[str] = VOTERS_3,
    *,
    state: PersistentState | None = None,
    config: RaftConfig | None = None,
    seed: int = 0,
    learners: Sequence[str] = (),
) -> RaftNode:
    """A node of a bootstrapped cluster (or restarted from ``state``)."""
    initial = state if state is not None else bootstrap_state(voters, learners)
    return RaftNode(node_id, config or fast_config(), initial, Random(seed))


def drain(node: RaftNode) -> list[Message]:
    """Process every Ready as a perfect shell would; return the messages sent."""
    sent: list[Message] = []
    while node.has_ready():
        ready = node.ready()
        sent.extend(ready.messages)
        node.advance(ready)
    return sent


def of_type(messages: Sequence[Message], kind: type[M]) -> list[M]:
    return [m for m in messages if isinstance(m, kind)]


def grant(node: RaftNode, voter: str, *, pre_vote: bool) -> None:
    term = node.term + 1 if pre_vote else node.term
    node.step(
        VoteResponse(term=term, from_id=voter, to_id=node.id, pre_vote=pre_vote, granted=True)
    )


def make_leader(node: RaftNode) -> list[Message]:
    """Run a PreVote and a vote round in which every other voter grants at once."""
    node.start_election(transfer=False)
    others = sorted(node.conf.voters - {node.id})
    if node.role is Role.PRE_CANDIDATE:
        for voter in others:
            if node.role is Role.PRE_CANDIDATE:
                grant(node, voter, pre_vote=True)
    for voter in others:
        if node.role is Role.CANDIDATE:
            grant(node, voter, pre_vote=False)
    assert node.role is Role.LEADER, node
    return drain(node)
