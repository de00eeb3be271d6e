"""Who votes: the leader keeps the Raft configuration in line with the members.

Theory of operation
-------------------
Every :data:`VOTER_CHECK_INTERVAL_S` the leader asks
:func:`protocol.raft.voters.choose_voters` for a plan over the *members* — nodes
whose admission is committed and not revoked in the control state — with each
member's health from gossip (alive or not) and the time since when it has been
continuously alive (tracked here, on trio's clock).  A member that was not alive
at some check restarts its stabilisation time, so a flapping node never gets a seat.

The plan's first change is proposed only when no other change is pending (one
server at a time); the next check asks again.  Admitted members therefore join the
configuration as learners at once, the stable ones are promoted up to
``max_voters``, dead voters are demoted and revoked members removed.

Nothing happens until the leader itself has been admitted on the log (the founder
admits itself first), so a fresh cluster's plan never removes its only voter.  A
leader whose own certificate was revoked plans its own removal: once that change
commits it is no voter any more and the others elect a leader among themselves.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from protocol.errors import LocalProtocolError
from protocol.raft import CandidateInfo, Role, choose_voters
from vramancer_node.consensus.service import ConsensusService
from vramancer_node.logs import get_logger

log = get_logger("consensus.voting")

VOTER_CHECK_INTERVAL_S = 0.5
"""How often the leader compares the configuration with the members."""


class VoterManager:
    """The leader's autopilot; see the module docstring."""

    def __init__(
        self,
        service: ConsensusService,
        *,
        alive: Callable[[], set[str]],
        max_voters: int,
        stabilisation_s: float,
    ) -> None:
        self.service = service
        self._alive = alive
        self.max_voters = max_voters
        self.stabilisation_s = stabilisation_s
        self._alive_since: dict[str, float] = {}
        self.changes_proposed = 0

    async def run(self) -> None:
        while True:
            await trio.sleep(VOTER_CHECK_INTERVAL_S)
            self.check(trio.current_time())

    def check(self, now: float) -> None:
        """Track health; on the leader, propose the next configuration change."""
        alive = self._alive() | {self.service.node_id}
        for node_id in list(self._alive_since):
            if node_id not in alive:
                del self._alive_since[node_id]
        for node_id in alive:
            self._alive_since.setdefault(node_id, now)
        raft = self.service.raft
        control = self.service.control
        if raft.role is not Role.LEADER or raft.id not in control.members:
            return  # the founder admits itself first; a revoked leader removes itself
        if raft.log.committed < raft.pending_conf_index:
            return  # one change at a time
        members = [
            CandidateInfo(
                node_id=m.node_id,
                stable_since_s=self._alive_since.get(m.node_id, now),
                healthy=m.node_id in alive,
            )
            for m in control.active_members()
        ]
        plan = choose_voters(
            members,
            now,
            raft.conf.voters,
            self.max_voters,
            self.stabilisation_s,
            current_learners=raft.conf.learners,
        )
        if not plan.changes:
            return
        change = plan.changes[0]
        try:
            self.service.propose_conf_change(change)
        except LocalProtocolError as exc:  # refused, or a no-op change
            log.debug("configuration change refused", extra={"detail": str(exc)})
            return
        self.changes_proposed += 1
        log.info(
            "configuration change proposed",
            extra={"change": change.kind.name.lower(), "member": change.node_id},
        )
