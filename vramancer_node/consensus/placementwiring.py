"""Placement through the log in a running node: plan on the leader, commit epochs,
re-plan when members come and go, and show committed placements.

A mixin of :class:`vramancer_node.daemon.Node` (through
:class:`vramancer_node.consensuswiring.ConsensusWiring`); the planning itself is
:mod:`vramancer_node.consensus.placing`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from protocol.control import CommittedPlacement
from protocol.placement import Placement, PlacementInfeasible, ProfileError
from protocol.raft import Role
from vramancer_node.consensus.explicit import METHOD_EXPLICIT, explicit_epoch, parse_stages
from vramancer_node.consensus.placing import (
    PlacementRefused,
    PlacementRequestError,
    PlaceRequest,
    placement_view,
    plan_epoch,
    read_model,
    replan_request,
    to_placement,
)
from vramancer_node.consensus.service import (
    PROPOSER_ROLE,
    ConsensusService,
    ProposalFailed,
    ProposalRejected,
)
from vramancer_node.consensus.transport import Requester, RequestFailed
from vramancer_node.logs import get_logger
from vramancer_node.nodeparts import NodeParts

log = get_logger("daemon")

OP_PLACE = "place"
"""Forwarded request: plan a model on the leader and commit it."""
PLACE_RETRY_S = 0.1
"""Pause before asking the (possibly new) leader again."""
REPLAN_INTERVAL_S = 2.0
"""How often the leader looks for placements to re-plan (a stage's node down, a
member up or gone)."""
UP_STATES = ("ALIVE", "SUSPECT")
"""Gossip states of a member that may hold stages: a suspect is not moved away from."""


class PlacementWiring(NodeParts):
    """Placement duties of a node (mixed into ``Node`` with the consensus wiring)."""

    def _require_consensus(self) -> ConsensusService:
        if self.consensus is None or not self.consensus.started.is_set():
            raise ProposalFailed("consensus has not started yet")
        return self.consensus

    def committed_placement(self, model_id: str) -> tuple[int, Placement] | None:
        """The committed placement epoch of ``model_id`` and its stages, if any."""
        committed = self.consensus.control.placement(model_id) if self.consensus else None
        if committed is None:
            return None
        return committed.placement.epoch, to_placement(committed.placement)

    async def wait_placement_change(self) -> None:
        """Wait until the next placement epoch (of any model) is applied here."""
        await self._require_consensus().placement_changed.wait()

    async def propose_placement(
        self, model_dir: Path, context_tokens: int, dtype: str
    ) -> tuple[int, Placement]:
        """Plan ``model_dir`` on the leader, commit it, return the committed epoch.

        Raises :class:`PlacementRequestError` (bad request), :class:`PlacementRefused`
        (fits nowhere: the optimiser's shortfall message), :class:`ProposalRejected`
        (another epoch of the model committed first) or :class:`ProposalFailed` (no
        commit within ``consensus.proposal_timeout_s``).
        """
        model_id = await self._commit_placement(model_dir, context_tokens, dtype)
        result = self.committed_placement(model_id)
        if result is None:
            raise ProposalFailed(f"the placement of {model_id} vanished")
        return result

    async def propose_placement_view(
        self, model_dir: Path, context_tokens: int, dtype: str
    ) -> dict[str, Any]:
        """:meth:`propose_placement`, answered as the API shows a placement."""
        model_id = await self._commit_placement(model_dir, context_tokens, dtype)
        view = self.placement_view_of(model_id)
        if view is None:
            raise ProposalFailed(f"the placement of {model_id} vanished")
        return view

    async def propose_explicit_placement_view(
        self,
        model_dir: Path,
        context_tokens: int,
        dtype: str,
        stages: object,
        force: bool = False,
    ) -> dict[str, Any]:
        """Commit ``stages`` (the JSON list of a request body) as the model's next epoch,
        checked as :mod:`vramancer_node.consensus.explicit` says; the API's view of the
        committed placement.

        A hand-made placement is a proposal: only a member whose certificate holds the
        ``admin`` role may make one (``PermissionError``), as the leader demands of a
        forwarded proposal.  Raises :class:`PlacementRequestError` (400),
        :class:`PlacementRefused` (409: a stage's node down, its device too small),
        :class:`ProposalRejected` (another epoch committed first) or
        :class:`ProposalFailed`.
        """
        if self.membership is None or PROPOSER_ROLE not in self.membership.cert.roles:
            raise PermissionError(
                f"only a member with the {PROPOSER_ROLE} role may commit explicit stages"
                " (any member may have the leader plan a placement: omit stages)"
            )
        request = read_model(model_dir, context_tokens, dtype)
        parsed = parse_stages(stages)
        service = self._require_consensus()
        epoch = explicit_epoch(
            request, parsed, control=service.control, up=self._up_records(), force=force
        )
        if epoch is not None:
            applied = await service.submit(epoch)
            log.info(
                "explicit placement committed",
                extra={"model": epoch.model_id, "epoch": epoch.epoch, "log_index": applied.index},
            )
        view = self.placement_view_of(request.model_id)
        if view is None:
            raise ProposalFailed(f"the placement of {request.model_id} vanished")
        return view

    def _up_records(self) -> dict[str, Any]:
        """Gossiped records of the members that are up (alive or suspect), by node id."""
        if self.gossip is None:
            return {}
        return {
            m.record.node_id: m.record
            for m in self.gossip.core.members()
            if m.state.name in UP_STATES
        }

    def plan_placement_view(
        self, model_dir: Path, context_tokens: int, dtype: str
    ) -> dict[str, Any]:
        """Preview: what the leader would commit for ``model_dir`` now, planned on this
        node's view of the members; nothing is proposed.

        ``changes`` is False when the plan keeps the committed placement (shown then).
        Raises :class:`PlacementRequestError` or :class:`PlacementRefused`.
        """
        request = read_model(model_dir, context_tokens, dtype)
        service = self._require_consensus()
        previous = service.control.placement(request.model_id)
        try:
            epoch = plan_epoch(request, self._placement_records(), previous)
        except PlacementInfeasible as exc:
            raise PlacementRefused(str(exc)) from exc
        names = {m.node_id: m.node_name for m in service.control.members.values()}
        if epoch is None:
            assert previous is not None
            return {**placement_view(previous, names), "changes": False}
        planned = CommittedPlacement(placement=epoch, index=0)
        return {**placement_view(planned, names), "changes": True}

    async def _commit_placement(self, model_dir: Path, context_tokens: int, dtype: str) -> str:
        request = read_model(model_dir, context_tokens, dtype)
        service = self._require_consensus()
        with trio.move_on_after(service.settings.proposal_timeout_s) as scope:
            index = await self._place_on_leader(service, request)
        if scope.cancelled_caught:
            raise ProposalFailed(
                f"no placement committed within {service.settings.proposal_timeout_s:g} s"
            )
        await service.wait_applied(index)
        return request.model_id

    async def _place_on_leader(self, service: ConsensusService, request: PlaceRequest) -> int:
        while True:
            raft = service.raft
            reply: dict[str, Any] | None = None
            if raft.role is Role.LEADER:
                reply = await self._serve_place(None, OP_PLACE, request.to_wire())
            elif raft.leader_id is not None:
                try:
                    reply = await service.transport.request(
                        raft.leader_id, OP_PLACE, request.to_wire()
                    )
                except RequestFailed as exc:
                    log.info("forwarding to the leader failed", extra={"detail": str(exc)})
            if reply is not None:
                if reply.get("ok") is True and isinstance(reply.get("index"), int):
                    return int(reply["index"])
                error, reason = reply.get("error"), str(reply.get("reason"))
                if error == "infeasible":
                    raise PlacementRefused(reason)
                if error == "bad_request":
                    raise PlacementRequestError(reason)
                if error == "rejected":
                    raise ProposalRejected(reason, int(reply.get("index") or 0))
            await trio.sleep(PLACE_RETRY_S)

    async def _serve_place(
        self, requester: Requester | None, op: str, payload: Any
    ) -> dict[str, Any]:
        """Leader: plan the model on the live members and commit the next epoch (any
        member may ask: the leader plans, the requester only names the model)."""
        service = self._require_consensus()
        if service.raft.role is not Role.LEADER:
            return {"ok": False, "error": "not_leader"}
        try:
            request = PlaceRequest.from_wire(payload)
            previous = service.control.placement(request.model_id)
            epoch = plan_epoch(request, self._placement_records(), previous)
        except (PlacementRequestError, ProfileError) as exc:
            return {"ok": False, "error": "bad_request", "reason": str(exc)}
        except PlacementInfeasible as exc:
            return {"ok": False, "error": "infeasible", "reason": str(exc)}
        if epoch is None:
            assert previous is not None
            return {"ok": True, "index": previous.index}
        try:
            applied = await service.submit(epoch)
        except ProposalRejected as exc:
            return {"ok": False, "error": "rejected", "reason": exc.reason, "index": exc.index}
        except ProposalFailed as exc:
            return {"ok": False, "error": "failed", "reason": str(exc)}
        log.info(
            "placement committed",
            extra={"model": epoch.model_id, "epoch": epoch.epoch, "stages": len(epoch.stages)},
        )
        return {"ok": True, "index": applied.index}

    def _placement_records(self) -> list[Any]:
        """Gossiped records of the active members that are up (may hold stages)."""
        assert self.gossip is not None and self.consensus is not None
        control = self.consensus.control
        return [
            m.record
            for m in self.gossip.core.members()
            if m.state.name in UP_STATES and control.is_active(m.record.node_id)
        ]

    async def _replan_loop(self) -> None:
        """Leader: re-plan every model whose stage's node is down, and every model not
        placed explicitly when the set of members that are up changes (hysteresis
        keeps a running placement unless the new one is clearly faster)."""
        assert self.consensus is not None
        service = self.consensus
        last_up: frozenset[str] | None = None
        failures: dict[str, str] = {}
        while True:
            await trio.sleep(REPLAN_INTERVAL_S)
            if service.raft.role is not Role.LEADER or self.gossip is None:
                last_up = None
                continue
            up = frozenset(r.node_id for r in self._placement_records() if not r.drain)
            changed, last_up = up != last_up, up
            for _, committed in sorted(service.control.placements.items()):
                stranded = any(s.node_id not in up for s in committed.placement.stages)
                # An operator's explicit stages stay while their nodes are up: only a
                # stranded stage hands the model back to the optimiser.
                pinned = committed.placement.method == METHOD_EXPLICIT
                if stranded or (changed and not pinned):
                    await self._replan(service, committed, failures)

    async def _replan(
        self, service: ConsensusService, committed: CommittedPlacement, failures: dict[str, str]
    ) -> None:
        request = replan_request(committed)
        if request is None:
            return
        model_id = request.model_id
        try:
            epoch = plan_epoch(request, self._placement_records(), committed)
            if epoch is not None:
                await service.submit(epoch)
        except (
            PlacementInfeasible,
            PlacementRequestError,
            ProfileError,
            ProposalFailed,
            ProposalRejected,
        ) as exc:
            if failures.get(model_id) != str(exc):  # say it once, not every interval
                failures[model_id] = str(exc)
                log.warning("re-planning failed", extra={"model": model_id, "detail": str(exc)})
            return
        failures.pop(model_id, None)
        if epoch is not None:
            log.info(
                "placement re-planned",
                extra={"model": model_id, "epoch": epoch.epoch, "stages": len(epoch.stages)},
            )

    def placements_view(self) -> list[dict[str, Any]]:
        """Every committed placement (schema ``vramancer.consensus.placements.v1``)."""
        if self.consensus is None:
            return []
        names = {m.node_id: m.node_name for m in self.consensus.control.members.values()}
        return [
            placement_view(committed, names)
            for _, committed in sorted(self.consensus.control.placements.items())
        ]

    def placement_view_of(self, model_id: str) -> dict[str, Any] | None:
        if self.consensus is None:
            return None
        control = self.consensus.control
        committed: CommittedPlacement | None = control.placement(model_id)
        if committed is None:
            return None
        names = {m.node_id: m.node_name for m in control.members.values()}
        return placement_view(committed, names)
