"""The attributes a running ``Node`` holds, declared once for its mixins.

``Node`` (:mod:`vramancer_node.daemon`) is assembled from mixins — enrolment, audit
wiring — that all read and write the same state.  They inherit this class so the type
checker knows that state; only ``Node.__init__`` assigns it.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crypto.identity import NodeIdentity
    from vramancer_node.audit import AuditService
    from vramancer_node.cluster import Admin, ClusterStore, Membership
    from vramancer_node.config import NodeConfig
    from vramancer_node.consensus import ConsensusService
    from vramancer_node.membership import MembershipService
    from vramancer_node.metrics import NodeMetrics
    from vramancer_node.net.handshake import Credentials
    from vramancer_node.peering import PeerService


class NodeParts:
    """State shared by ``Node`` and its mixins (annotations only)."""

    config: NodeConfig
    state_dir: Path
    identity: NodeIdentity
    name: str
    store: ClusterStore
    membership: Membership | None
    admin: Admin | None
    audit: AuditService | None
    gossip: MembershipService | None
    consensus: ConsensusService | None
    creds: Credentials
    peers: PeerService
    metrics: NodeMetrics
    """A part registers its metrics with ``self.metrics.register_collector``."""
    _token: str | None
    _announce: Callable[[str], None]
    _pending_audit: list[tuple[str, dict[str, Any]]]
    cosign_exchanges: collections.Counter[str]
    _joined_via: str | None
    # Methods one mixin provides to another (ConsensusWiring -> Enrolment).
    _commit_admission: Callable[[str, bytes], Awaitable[int]]
    _consensus_revoked_serials: Callable[[], frozenset[int]]
