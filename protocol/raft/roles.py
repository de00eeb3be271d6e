"""The four roles of a Raft node and the table of transitions between them.

Theory of operation
-------------------
::

                 election timeout             pre-vote won
     FOLLOWER  -------------------> PRE_CANDIDATE ----------> CANDIDATE --> LEADER
      ^  ^  ^        (pre_vote on)    |   ^  election timeout  |  ^   vote won  |
      |  |  |                          |   +--------------------+  |             |
      |  |  +-------- lost, or heard a leader, or higher term -----+             |
      |  |                                                                       |
      |  +---- higher term, or a quorum silent for an election timeout ----------+
      |
      +---- TimeoutNow from the leader (transfer) goes straight to CANDIDATE

Without PreVote an election timeout leads straight to CANDIDATE.  Only a voter of the
node's committed configuration ever leaves FOLLOWER on its own; learners and nodes
outside the configuration stay followers: they never campaign, and no node that
knows them as learners asks for or counts their vote (``core.py`` explains why they
still answer a candidate whose configuration is older).

The core calls :func:`next_role` for every change; a (role, trigger) pair missing
from :data:`TRANSITIONS` is a bug in the core and raises ``LocalProtocolError``.
"""

from __future__ import annotations

import enum

from protocol.errors import LocalProtocolError


class Role(enum.Enum):
    """What a node currently does in its term."""

    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class Trigger(enum.Enum):
    """Why a node changes role."""

    ELECTION_TIMEOUT = "election timeout"
    """No leader heard for a randomized election timeout; PreVote on."""
    ELECTION_TIMEOUT_NO_PRE_VOTE = "election timeout without pre-vote"
    """Same, with PreVote off: campaign for real at once."""
    TIMEOUT_NOW = "timeout now"
    """The leader hands over leadership: campaign at once, skipping PreVote."""
    PRE_VOTE_WON = "pre-vote won"
    VOTE_WON = "vote won"
    ELECTION_LOST = "election lost"
    """A quorum refused, so wait for someone else."""
    LEADER_HEARD = "leader heard"
    """An append, heartbeat or snapshot from the leader of our term."""
    HIGHER_TERM = "higher term"
    """A message carried a higher term."""
    QUORUM_LOST = "quorum lost"
    """CheckQuorum: a quorum of voters was silent for an election timeout."""


TRANSITIONS: dict[tuple[Role, Trigger], Role] = {
    (Role.FOLLOWER, Trigger.ELECTION_TIMEOUT): Role.PRE_CANDIDATE,
    (Role.FOLLOWER, Trigger.ELECTION_TIMEOUT_NO_PRE_VOTE): Role.CANDIDATE,
    (Role.FOLLOWER, Trigger.TIMEOUT_NOW): Role.CANDIDATE,
    (Role.FOLLOWER, Trigger.LEADER_HEARD): Role.FOLLOWER,
    (Role.FOLLOWER, Trigger.HIGHER_TERM): Role.FOLLOWER,
    (Role.PRE_CANDIDATE, Trigger.PRE_VOTE_WON): Role.CANDIDATE,
    (Role.PRE_CANDIDATE, Trigger.ELECTION_TIMEOUT): Role.PRE_CANDIDATE,
    (Role.PRE_CANDIDATE, Trigger.ELECTION_LOST): Role.FOLLOWER,
    (Role.PRE_CANDIDATE, Trigger.LEADER_HEARD): Role.FOLLOWER,
    (Role.PRE_CANDIDATE, Trigger.HIGHER_TERM): Role.FOLLOWER,
    (Role.CANDIDATE, Trigger.VOTE_WON): Role.LEADER,
    (Role.CANDIDATE, Trigger.ELECTION_TIMEOUT): Role.PRE_CANDIDATE,
    (Role.CANDIDATE, Trigger.ELECTION_TIMEOUT_NO_PRE_VOTE): Role.CANDIDATE,
    (Role.CANDIDATE, Trigger.ELECTION_LOST): Role.FOLLOWER,
    (Role.CANDIDATE, Trigger.LEADER_HEARD): Role.FOLLOWER,
    (Role.CANDIDATE, Trigger.HIGHER_TERM): Role.FOLLOWER,
    (Role.LEADER, Trigger.HIGHER_TERM): Role.FOLLOWER,
    (Role.LEADER, Trigger.QUORUM_LOST): Role.FOLLOWER,
}
"""(current role, trigger) -> next role.  Anything else is a bug."""


def next_role(role: Role, trigger: Trigger) -> Role:
    """The role ``trigger`` moves a node in ``role`` to."""
    try:
        return TRANSITIONS[(role, trigger)]
    except KeyError:
        message = f"no Raft role transition from {role.value} on {trigger.value}"
        raise LocalProtocolError(message) from None
