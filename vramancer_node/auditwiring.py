"""The audit log in a running node: start it, feed it, and exchange and cosign
checkpoints with every live member over audit sessions.

A mixin of :class:`vramancer_node.daemon.Node`.
"""

from __future__ import annotations

import trio

from protocol.errors import RemoteProtocolError
from protocol.frames import BulkFrame
from protocol.session import SERVICE_AUDIT
from vramancer_node.audit import AuditService
from vramancer_node.audit.cosign import exchange_checkpoints
from vramancer_node.logs import get_logger
from vramancer_node.net.handshake import (
    AuthenticatedPeer,
    HandshakeFailed,
)
from vramancer_node.net.securestream import SecureStream
from vramancer_node.nodeparts import NodeParts

log = get_logger("daemon")

BULK_KIND_AUDIT = 2
"""BULK frame kind of an audit checkpoint-exchange message."""


class AuditWiring(NodeParts):
    """Audit duties of a node (mixed into ``Node``)."""

    async def _start_audit(self, nursery: trio.Nursery) -> None:
        assert self.membership is not None
        self.audit = AuditService(self.state_dir, self.identity, self.membership.cluster_id)
        await nursery.start(self.audit.run)
        self.peers.on_refused = self.audit.note_refused_handshake
        self.peers.register(SERVICE_AUDIT, self._serve_audit_session)
        for kind, body in self._pending_audit:
            await self.audit.append(kind, body)
        self._pending_audit.clear()

    async def _exchange_checkpoints(self, peer: AuthenticatedPeer, secure: SecureStream) -> None:
        assert self.audit is not None

        async def send(message: bytes) -> None:
            await secure.send_bulk(BULK_KIND_AUDIT, b"", message)

        async def receive() -> bytes:
            frame = await secure.receive_frame()
            if not isinstance(frame, BulkFrame) or frame.kind != BULK_KIND_AUDIT:
                raise RemoteProtocolError(
                    f"expected an audit BULK frame, got {type(frame).__name__}"
                )
            return bytes(frame.body)

        result = await exchange_checkpoints(
            send, receive, self.audit, peer.node_id, peer.public_key
        )
        log.info(
            "exchanged audit checkpoints",
            extra={
                "peer_node_id": peer.node_id,
                "our_size": result.our_size,
                "our_cosigned": result.our_cosigned,
                "peer_size": result.peer_size,
                "peer_cosigned": result.peer_cosigned,
                "refusal": result.our_refusal or result.peer_refusal,
            },
        )

    async def _serve_audit_session(
        self, peer: AuthenticatedPeer, secure: SecureStream, body: bytes
    ) -> None:
        await self._exchange_checkpoints(peer, secure)

    async def _cosign_loop(self) -> None:
        """Exchange and cosign checkpoints with every live member, periodically."""
        assert self.gossip is not None
        while True:
            await trio.sleep(self.config.audit.cosign_interval_s)
            for member in self.gossip.core.members():
                if member.record.node_id == self.identity.node_id or member.state.name != "ALIVE":
                    continue
                try:
                    async with self.peers.open_session(
                        member.record.addresses[0], SERVICE_AUDIT
                    ) as (peer, secure):
                        await self._exchange_checkpoints(peer, secure)
                    self.cosign_exchanges["ok"] += 1
                except (
                    HandshakeFailed,
                    RemoteProtocolError,
                    OSError,
                    trio.TooSlowError,
                    trio.BrokenResourceError,
                    trio.ClosedResourceError,
                ) as exc:
                    self.cosign_exchanges["failed"] += 1
                    log.warning(
                        "checkpoint exchange failed",
                        extra={"peer_node_id": member.record.node_id, "detail": str(exc)},
                    )
