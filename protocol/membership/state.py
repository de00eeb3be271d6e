"""SWIM member states and the claims that move a member between them.

Theory of operation
-------------------
Each member is in one of four states.  Rumours about it arrive as *claims*, each
carrying an incarnation number.  A claim is considered only if its incarnation is
fresh enough (:data:`CLAIM_NEEDS_NEWER_INCARNATION`), and then the transition table
:data:`TRANSITIONS` says where it leads.  A (state, claim) pair missing from the table
is ignored: for example nothing but a newer ALIVE brings a dead member back, and a
suspicion about a member already suspected is a *confirmation* that feeds the
Lifeguard timer instead of a transition.

::

                  SUSPECT (inc >= i)          suspicion timeout / DEAD (inc >= i)
        ALIVE  ----------------------> SUSPECT ---------------------------------> DEAD
          ^  \\   <----------------------   |                                      |
          |   \\     ALIVE (inc > i)        | LEFT (inc >= i)                      |
          |    \\                           v                                      |
          |     `----- LEFT (inc >= i) --> LEFT                                    |
          |                                 |                                      |
          `--------- ALIVE (inc > i) -------+--------------------------------------'

``i`` is the incarnation we hold for the member.  An ALIVE claim must be strictly
newer (only the member itself can mint it, by refuting); SUSPECT, DEAD and LEFT win
ties, so an accusation at the current incarnation sticks until the member refutes.
A LEFT claim is a DEAD claim sent by the member about itself (graceful leave).
Claims about the local member never move it: the core refutes them instead.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from protocol.membership.record import MemberRecord


class MemberState(enum.IntEnum):
    """Liveness of a member.  Values are on the wire: append only, never renumber."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


class Claim(enum.Enum):
    """What a rumour says about a member."""

    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"


CLAIM_NEEDS_NEWER_INCARNATION: dict[Claim, bool] = {
    Claim.ALIVE: True,  # only the member can mint a higher incarnation: a refutation
    Claim.SUSPECT: False,  # accusations win ties, until the member refutes
    Claim.DEAD: False,
    Claim.LEFT: False,
}

TRANSITIONS: dict[tuple[MemberState, Claim], MemberState] = {
    (MemberState.ALIVE, Claim.ALIVE): MemberState.ALIVE,  # newer incarnation, no change
    (MemberState.ALIVE, Claim.SUSPECT): MemberState.SUSPECT,
    (MemberState.ALIVE, Claim.DEAD): MemberState.DEAD,
    (MemberState.ALIVE, Claim.LEFT): MemberState.LEFT,
    (MemberState.SUSPECT, Claim.ALIVE): MemberState.ALIVE,  # refuted
    (MemberState.SUSPECT, Claim.DEAD): MemberState.DEAD,
    (MemberState.SUSPECT, Claim.LEFT): MemberState.LEFT,
    (MemberState.DEAD, Claim.ALIVE): MemberState.ALIVE,  # rejoined
    (MemberState.LEFT, Claim.ALIVE): MemberState.ALIVE,  # rejoined
}
"""(current state, claim) -> next state.  Missing pairs are ignored."""

LIVE_STATES = frozenset({MemberState.ALIVE, MemberState.SUSPECT})
"""States in which a member is probed, gossiped to and counted in the cluster size."""


def next_state(
    state: MemberState, incarnation: int, claim: Claim, claim_incarnation: int
) -> MemberState | None:
    """The state ``claim`` moves a member to, or ``None`` when it is ignored."""
    if CLAIM_NEEDS_NEWER_INCARNATION[claim]:
        if claim_incarnation <= incarnation:
            return None
    elif claim_incarnation < incarnation:
        return None
    return TRANSITIONS.get((state, claim))


@dataclass(frozen=True, kw_only=True, slots=True)
class Member:
    """A snapshot of what the local node believes about one member."""

    record: MemberRecord
    """The newest record known; ``record.incarnation`` is the newest incarnation heard."""
    state: MemberState
    """Liveness as the local node sees it."""
    state_change_s: float
    """``now`` of the last state change, on the caller's clock."""
