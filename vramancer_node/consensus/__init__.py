"""Consensus in the daemon: the Raft core on LMDB and the network, the replicated
control state, placement through the log.

=============  ==================================================================
``service``    :class:`ConsensusService`: tick loop, Ready processing, proposals
``storage``    :class:`RaftStorage`: hard state, entries, snapshot in LMDB (synced)
``transport``  :class:`RaftTransport`: Raft messages and forwarded requests over
               ``raft`` sessions of the peer service
``voting``     :class:`VoterManager`: the leader keeps voters and learners in line
               with the members (autopilot)
``placing``    placement requests, ``plan_epoch`` on the leader, views
``explicit``   stages an admin names, checked like the optimiser's, as an epoch
``placementwiring``  the ``Node`` mixin: propose, plan, re-plan, show placements
``records``    the audit record of each committed command
``routes``     ``/v1/placement``, ``/v1/revocations``, ``/v1/consensus``
=============  ==================================================================

What the node offers other parts of the daemon (the pipeline, the API), defined in
:mod:`vramancer_node.consensus.placementwiring` and :mod:`vramancer_node.consensuswiring`
and mixed into ``Node``:

``node.committed_placement(model_id) -> (epoch, Placement) | None``
    The committed placement epoch of a model and its stages as the optimiser's
    :class:`protocol.placement.Placement` (stages in pipeline order).
``await node.propose_placement(model_dir, context_tokens, dtype) -> (epoch, Placement)``
    Plan the checkpoint at ``model_dir`` on the leader (forwarded when this node does
    not lead), commit it as the model's next epoch and return it once applied here.
    Raises ``PlacementRequestError`` (bad config, model id, context or dtype),
    ``PlacementRefused`` (fits nowhere; the message names the shortfall),
    ``ProposalRejected`` (another epoch of the model committed first) or
    ``ProposalFailed`` (no commit in ``consensus.proposal_timeout_s``).
``await node.propose_explicit_placement_view(model_dir, context_tokens, dtype, stages, force)``
    Commit ``stages`` (``POST /v1/placement``'s JSON list) as the model's next epoch,
    method ``explicit`` (admins only: ``PermissionError``); see
    :mod:`vramancer_node.consensus.explicit` for the checks and their errors.
``await node.wait_placement_change()``
    Returns when the next placement epoch of any model is applied on this node
    (``node.consensus.placement_changed`` is a ``trio.Event`` replaced on each one).
``await node.revoke(node_id, reason)``
    Admins: commit the revocation of a member's certificate; every node's trust
    policy refuses it once applied.

Model ids: a checkpoint directory's name unless its ``config.json`` names the model
(``_name_or_path``); see :mod:`vramancer_node.consensus.placing`.
"""

from __future__ import annotations

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
    ConsensusService,
    ConsensusSettings,
    ProposalFailed,
    ProposalRejected,
)
from vramancer_node.consensus.storage import ConsensusStoreError, RaftStorage
from vramancer_node.consensus.transport import RaftTransport, RequestFailed
from vramancer_node.consensus.voting import VoterManager

__all__ = [
    "ConsensusService",
    "ConsensusSettings",
    "ConsensusStoreError",
    "PlaceRequest",
    "PlacementRefused",
    "PlacementRequestError",
    "ProposalFailed",
    "ProposalRejected",
    "RaftStorage",
    "RaftTransport",
    "RequestFailed",
    "VoterManager",
    "placement_view",
    "plan_epoch",
    "read_model",
    "replan_request",
    "to_placement",
]
