"""Choosing the voters among the members (after Consul's autopilot), as a pure function.

Theory of operation
-------------------
Every member of the cluster is in the Raft configuration; at most ``max_voters`` of
them (an odd number, 5 by default) vote, every other one is a learner.  The leader's
shell calls :func:`choose_voters` whenever membership or health changes, proposes the
first change of the returned plan, waits for it to commit, and asks again: one
server at a time, as Raft requires.

Who should vote:

1. Current voters that are still members and healthy keep their seat: moving a vote
   costs a catch-up and a risky configuration change, so incumbents win ties.
2. Free seats go to healthy members that have been stable for ``stabilisation_s``
   (autopilot's ``ServerStabilizationTime``), oldest first, then by node id.  A member
   that flaps keeps resetting its ``stable_since_s`` and so never gets a seat.
3. The voter count is the largest odd number not above ``max_voters`` and the number
   of candidates from 1 and 2: an even count tolerates no more failures than the odd
   count below it, but needs one more node up.  Incumbents beyond it step down,
   newest first.
4. If nobody qualifies the current voters stay (an empty voter set cannot commit the
   change that would fix it).

The plan orders changes so that each one is safe on its own:

=====  ====================================================  ================
step   change                                                ConfChangeKind
=====  ====================================================  ================
1      remove voters that are no longer members              REMOVE_NODE
2      demote unhealthy voters that lost their seat          ADD_LEARNER
3      add a new voter as learner first (it catches up),     ADD_LEARNER,
       then promote it                                       ADD_VOTER
4      demote healthy voters beyond the target count         ADD_LEARNER
5      add the remaining members as learners                 ADD_LEARNER
6      remove learners that are no longer members            REMOVE_NODE
=====  ====================================================  ================

Removing dead weight first lowers the quorum before anything else needs it (except
the last voter, which leaves only after its replacement arrived: no configuration in
the plan is ever without a voter); adding before demoting healthy voters keeps the
count (and so the failures tolerated) from dipping in between.  Times are on the
caller's clock; nothing here reads one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from protocol.raft.conf import ConfChange, ConfChangeKind, check_node_id

MAX_VOTERS_DEFAULT = 5
"""Voters in a cluster of five or more healthy members: two failures tolerated."""
MAX_VOTERS_LIMIT = 9
"""Upper bound of ``max_voters``: every voter is on the commit path of every entry."""
VOTER_STABILISATION_S_DEFAULT = 10.0
"""How long a member must be healthy before it may vote (autopilot's default)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class CandidateInfo:
    """What voter selection needs to know about one member."""

    node_id: str
    """The member."""
    stable_since_s: float
    """Since when (caller's clock, seconds) it has been continuously alive and healthy."""
    healthy: bool
    """Alive and fit to vote right now (membership says alive, not draining, ...)."""

    def __post_init__(self) -> None:
        check_node_id("node_id", self.node_id)
        if not math.isfinite(self.stable_since_s):
            raise ValueError(f"stable_since_s must be finite, got {self.stable_since_s!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class VoterPlan:
    """The configuration to aim for, and the single changes that lead there."""

    voters: frozenset[str]
    """Desired voters."""
    learners: frozenset[str]
    """Desired learners: every other member."""
    changes: tuple[ConfChange, ...]
    """Changes in order; propose the first, wait for its commit, then ask again."""


def choose_voters(
    members: Sequence[CandidateInfo],
    now: float,
    current_voters: Iterable[str],
    max_voters: int = MAX_VOTERS_DEFAULT,
    stabilisation_s: float = VOTER_STABILISATION_S_DEFAULT,
    *,
    current_learners: Iterable[str] = (),
) -> VoterPlan:
    """Desired voters and learners among ``members``, and a one-at-a-time plan."""
    _check_arguments(max_voters, stabilisation_s)
    by_id = {member.node_id: member for member in members}
    if len(by_id) != len(members):
        raise ValueError("a member is listed twice")
    voters_now = frozenset(current_voters)
    learners_now = frozenset(current_learners) - voters_now
    voters = _desired_voters(by_id, now, voters_now, max_voters, stabilisation_s)
    learners = frozenset(by_id) - voters
    return VoterPlan(
        voters=voters,
        learners=learners,
        changes=_plan(by_id, voters_now, learners_now, voters),
    )


def _check_arguments(max_voters: int, stabilisation_s: float) -> None:
    valid = isinstance(max_voters, int) and not isinstance(max_voters, bool)
    if not valid or not 1 <= max_voters <= MAX_VOTERS_LIMIT or max_voters % 2 == 0:
        raise ValueError(
            f"max_voters must be an odd int in [1, {MAX_VOTERS_LIMIT}]: {max_voters!r}"
        )
    if not (math.isfinite(stabilisation_s) and stabilisation_s >= 0):
        raise ValueError(f"stabilisation_s must be finite and >= 0, got {stabilisation_s!r}")


def _seniority(member: CandidateInfo) -> tuple[float, str]:
    return (member.stable_since_s, member.node_id)


def _desired_voters(
    by_id: dict[str, CandidateInfo],
    now: float,
    voters_now: frozenset[str],
    max_voters: int,
    stabilisation_s: float,
) -> frozenset[str]:
    incumbents = sorted(
        (by_id[v] for v in voters_now if v in by_id and by_id[v].healthy), key=_seniority
    )
    newcomers = sorted(
        (
            m
            for m in by_id.values()
            if m.healthy
            and m.node_id not in voters_now
            and now - m.stable_since_s >= stabilisation_s
        ),
        key=_seniority,
    )
    target = min(max_voters, len(incumbents) + len(newcomers))
    if target % 2 == 0:
        target -= 1
    if target <= 0:
        return voters_now
    chosen = (incumbents + newcomers)[:target]
    return frozenset(member.node_id for member in chosen)


def _plan(
    by_id: dict[str, CandidateInfo],
    voters_now: frozenset[str],
    learners_now: frozenset[str],
    voters: frozenset[str],
) -> tuple[ConfChange, ...]:
    def change(kind: ConfChangeKind, node_id: str) -> ConfChange:
        return ConfChange(kind=kind, node_id=node_id)

    members = frozenset(by_id)
    leaving = sorted(voters_now - voters)
    dead_weight = [change(ConfChangeKind.REMOVE_NODE, v) for v in leaving if v not in members]
    dead_weight += [
        change(ConfChangeKind.ADD_LEARNER, v)
        for v in leaving
        if v in members and not by_id[v].healthy
    ]
    # Dead weight goes first, except a change that would leave no voter at all: that
    # one waits until the replacement has been promoted.
    changes, last_resort, remaining = [], [], set(voters_now)
    for step in dead_weight:
        if remaining - {step.node_id}:
            changes.append(step)
            remaining.discard(step.node_id)
        else:
            last_resort.append(step)
    for node_id in sorted(voters - voters_now, key=lambda n: _seniority(by_id[n])):
        if node_id not in learners_now:
            changes.append(change(ConfChangeKind.ADD_LEARNER, node_id))
        changes.append(change(ConfChangeKind.ADD_VOTER, node_id))
    changes += last_resort
    changes += [
        change(ConfChangeKind.ADD_LEARNER, v) for v in leaving if v in members and by_id[v].healthy
    ]
    in_conf = voters_now | learners_now
    changes += [change(ConfChangeKind.ADD_LEARNER, n) for n in sorted(members - voters - in_conf)]
    changes += [change(ConfChangeKind.REMOVE_NODE, n) for n in sorted(learners_now - members)]
    return tuple(changes)
