"""The replicated control state machine behind the Raft log (pure, sans-I/O).

What the cluster must agree on — admitted members and their certificates,
revocations, placement epochs, federation links — is a sequence of commands in the
Raft log, applied by every node to the same :class:`ControlState` in the same order
(DESIGN.md section 6).

=============  ==================================================================
``commands``   the command values and :class:`CommandKind` (append only)
``codec``      the versioned, canonical msgpack encoding of a command
``state``      :class:`ControlState`: deterministic ``apply``, snapshot, restore
=============  ==================================================================
"""

from __future__ import annotations

from protocol.control.codec import CODEC_VERSION, decode_command, encode_command
from protocol.control.commands import (
    AdmitMember,
    Command,
    CommandKind,
    FederationLink,
    FederationLinkAdd,
    FederationLinkRemove,
    PlacementEpoch,
    Revoke,
    StageRange,
)
from protocol.control.state import (
    Applied,
    CommittedPlacement,
    ControlState,
    Member,
    Outcome,
    Rejected,
    Revocation,
)

__all__ = [
    "CODEC_VERSION",
    "AdmitMember",
    "Applied",
    "Command",
    "CommandKind",
    "CommittedPlacement",
    "ControlState",
    "FederationLink",
    "FederationLinkAdd",
    "FederationLinkRemove",
    "Member",
    "Outcome",
    "PlacementEpoch",
    "Rejected",
    "Revocation",
    "Revoke",
    "StageRange",
    "decode_command",
    "encode_command",
]
