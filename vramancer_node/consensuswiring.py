"""Consensus in a running node: start the Raft service, admit and revoke through the
log, and record every committed command in the audit log; placement duties come from
:class:`~vramancer_node.consensus.placementwiring.PlacementWiring`.

A mixin of :class:`vramancer_node.daemon.Node`; the substance lives in
:mod:`vramancer_node.consensus`.
"""

from __future__ import annotations

from typing import Any

import trio

from protocol.control import AdmitMember, Outcome, Revoke
from protocol.raft import RaftConfig, Role
from vramancer_node.consensus import (
    ConsensusService,
    ConsensusSettings,
    ProposalFailed,
    ProposalRejected,
    RaftTransport,
    VoterManager,
)
from vramancer_node.consensus.placementwiring import OP_PLACE, PlacementWiring
from vramancer_node.consensus.records import audit_record
from vramancer_node.logs import get_logger
from vramancer_node.net.handshake import HandshakeFailed

log = get_logger("daemon")

SELF_ADMISSION_RETRY_S = 0.2
"""Pause between the founder's attempts to admit itself (while it is not leader yet)."""


class ConsensusWiring(PlacementWiring):
    """Consensus duties of a node (mixed into ``Node``)."""

    async def _start_consensus(self, nursery: trio.Nursery) -> None:
        section = self.config.consensus
        settings = ConsensusSettings(
            tick_interval_s=section.tick_interval_s,
            raft=RaftConfig(
                election_ticks=section.election_ticks, heartbeat_ticks=section.heartbeat_ticks
            ),
            proposal_timeout_s=section.proposal_timeout_s,
        )
        service = ConsensusService(
            node_id=self.identity.node_id,
            state_dir=self.state_dir,
            settings=settings,
            transport=RaftTransport(self.peers, self.identity.node_id, self._member_address),
            bootstrap=self._founds_consensus,
            on_outcome=self._record_outcome,
            ca_pubkey=self.membership.ca_pubkey if self.membership else None,
        )
        service.request_handlers[OP_PLACE] = self._serve_place
        self.consensus = service
        await nursery.start(service.run)
        voters = VoterManager(
            service,
            alive=self._alive_members,
            max_voters=section.max_voters,
            stabilisation_s=section.stabilisation_s,
        )
        nursery.start_soon(voters.run)
        nursery.start_soon(self._admit_self)
        nursery.start_soon(self._replan_loop)

    # -- membership facts from gossip -------------------------------------------------

    def _member_address(self, node_id: str) -> str | None:
        member = self.gossip.core.member(node_id) if self.gossip is not None else None
        return member.record.addresses[0] if member is not None else None

    def _alive_members(self) -> set[str]:
        if self.gossip is None:
            return set()
        return {m.record.node_id for m in self.gossip.core.members() if m.state.name == "ALIVE"}

    def _founds_consensus(self) -> bool:
        """A node with an empty consensus store bootstraps only if it founded the
        cluster (the CA's first certificate, serial 1, is the founder's)."""
        assert self.membership is not None
        return self.admin is not None and self.membership.cert.serial == 1

    # -- admission and revocation -----------------------------------------------------

    async def _admit_self(self) -> None:
        """An admin that is not a committed member yet (the founder) admits itself."""
        assert self.consensus is not None and self.membership is not None
        service, me = self.consensus, self.identity.node_id
        while self.admin is not None and not service.control.is_active(me):
            if service.raft.role is Role.LEADER:
                try:
                    await service.submit(
                        AdmitMember(node_id=me, certificate=self.membership.certificate)
                    )
                except ProposalRejected as exc:
                    log.error("this node's own admission was refused", extra={"detail": str(exc)})
                    return
                except ProposalFailed:
                    pass
            await trio.sleep(SELF_ADMISSION_RETRY_S)

    async def _commit_admission(self, node_id: str, certificate: bytes) -> int:
        """Commit a joiner's admission before its grant leaves; return the log index."""
        try:
            service = self._require_consensus()
            applied = await service.submit(AdmitMember(node_id=node_id, certificate=certificate))
        except ProposalRejected as exc:
            # A forwarded proposal whose reply was lost is retried; the retry is then
            # refused as a duplicate although the first attempt committed.
            member = self.consensus.control.members.get(node_id) if self.consensus else None
            if member is not None and member.certificate == certificate:
                return member.admitted_index
            raise HandshakeFailed("admission_not_committed", str(exc)) from exc
        except ProposalFailed as exc:
            raise HandshakeFailed("admission_not_committed", str(exc)) from exc
        return applied.index

    async def revoke(self, node_id: str, reason: str) -> dict[str, Any]:
        """Revoke ``node_id``'s certificate cluster-wide (admins only).

        Raises ``PermissionError`` (not an admin), ``LookupError`` (not a member),
        :class:`ProposalRejected` or :class:`ProposalFailed`.
        """
        if self.admin is None:
            raise PermissionError("only a cluster admin (holding the CA key) may revoke")
        service = self._require_consensus()
        member = service.control.members.get(node_id)
        if member is None:
            raise LookupError(f"{node_id} is not a committed member of this cluster")
        applied = await service.submit(Revoke(serial=member.serial, reason=reason))
        log.info("certificate revoked", extra={"member": node_id, "serial": member.serial})
        return {"node_id": node_id, "serial": member.serial, "log_index": applied.index}

    def _consensus_revoked_serials(self) -> frozenset[int]:
        return self.consensus.control.revoked_serials() if self.consensus else frozenset()

    def consensus_status(self) -> dict[str, Any] | None:
        return self.consensus.status() if self.consensus is not None else None

    # -- audit ------------------------------------------------------------------------

    async def _record_outcome(self, outcome: Outcome) -> None:
        """Append one committed command to this node's audit log."""
        if self.audit is None:
            return
        kind, body = audit_record(outcome, self.consensus.control if self.consensus else None)
        await self.audit.append(kind, body)
