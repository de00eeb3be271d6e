"""What a committed control command leaves in the audit log (one record per entry,
on every node; kinds in :mod:`vramancer_node.audit.kinds`)."""

from __future__ import annotations

from typing import Any

from protocol.control import (
    AdmitMember,
    Applied,
    ControlState,
    FederationLinkAdd,
    FederationLinkRemove,
    Outcome,
    PlacementEpoch,
    Rejected,
    Revoke,
)
from protocol.control.commands import KIND_OF
from vramancer_node.audit import kinds

REASON_CHARS_MAX = 512
"""A rejection reason is cut to this length in the audit log."""


def audit_record(outcome: Outcome, control: ControlState | None) -> tuple[str, dict[str, Any]]:
    """The audit kind and body of a committed command."""
    index = outcome.index
    if isinstance(outcome, Rejected):
        body: dict[str, Any] = {"log_index": index, "reason": outcome.reason[:REASON_CHARS_MAX]}
        if outcome.command is not None:
            body["command"] = int(KIND_OF[type(outcome.command)])
        return kinds.CONTROL_REJECTED, body
    assert isinstance(outcome, Applied)
    command = outcome.command
    if isinstance(command, AdmitMember):
        member = control.members.get(command.node_id) if control else None
        return kinds.MEMBER_COMMITTED, {
            "node_id": command.node_id,
            "node_name": member.node_name if member else "",
            "serial": member.serial if member else 0,
            "log_index": index,
        }
    if isinstance(command, Revoke):
        holder = ""
        if control is not None:
            holder = next(
                (m.node_id for m in control.members.values() if m.serial == command.serial),
                "",
            )
        return kinds.CERTIFICATE_REVOKED, {
            "serial": command.serial,
            "node_id": holder,
            "reason": command.reason,
            "log_index": index,
        }
    if isinstance(command, PlacementEpoch):
        return kinds.PLACEMENT_COMMITTED, {
            "model": command.model_id,
            "placement_version": command.epoch,
            "stages": [
                {
                    "node_id": s.node_id,
                    "layer_begin": s.first_layer,
                    "layer_end": s.last_layer_exclusive,
                }
                for s in command.stages
            ],
            "log_index": index,
        }
    assert isinstance(command, (FederationLinkAdd, FederationLinkRemove))
    return kinds.FEDERATION_COMMITTED, {
        "action": "linked" if isinstance(command, FederationLinkAdd) else "unlinked",
        "address": command.link.address,
        "ca_fingerprint": command.link.ca_fingerprint,
        "log_index": index,
    }
