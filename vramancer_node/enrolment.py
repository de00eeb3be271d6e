"""How a node becomes and stays a member: found, join by token (via --peer or mDNS),
admit others (admins), and judge peers by the cluster's trust policy.

A mixin of :class:`vramancer_node.daemon.Node`, kept apart so the daemon module stays
about the lifecycle of services.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import trio

from crypto.binding import AdmissionGrant, IdentityPayload, JoinRequest
from crypto.certs import SignedCertificate
from crypto.identity import node_id_from_public_key
from crypto.tokens import parse_token
from vramancer_node.audit import kinds
from vramancer_node.cluster import (
    FOUNDING_TOKEN_TTL_S,
    FOUNDING_TOKEN_USES,
    Admin,
    Membership,
)
from vramancer_node.discovery import browse
from vramancer_node.logs import get_logger
from vramancer_node.net.handshake import (
    HandshakeFailed,
    TrustPolicy,
)
from vramancer_node.nodeparts import NodeParts
from vramancer_node.peering import join_via, wall_clock

log = get_logger("daemon")

DISCOVERY_WAIT_S = 3.0
"""How long a new node listens for its cluster on mDNS before joining or founding."""


class StartupError(Exception):
    """The node cannot start; the message tells the operator what to do."""


def token_audit_body(info: dict[str, Any]) -> dict[str, Any]:
    return {"token_id": info["token_id"], "uses": info["uses"], "expires_at": info["expires_at"]}


class Enrolment(NodeParts):
    """Cluster membership of a node (mixed into ``Node``)."""

    def _trust_policy(self) -> TrustPolicy | None:
        if self.membership is None:
            return None
        return TrustPolicy(
            ca_pubkey=self.membership.ca_pubkey,
            # Revocations committed on the consensus log count as soon as applied here.
            revoked_serials=self.membership.revoked_serials | self._consensus_revoked_serials(),
            now=wall_clock,
        )

    async def _admit(self, request: JoinRequest, peer: IdentityPayload, h: bytes) -> AdmissionGrant:
        assert self.admin is not None
        grant, token_id = self.admin.admit(request, peer, h, wall_clock())
        self.membership = self.admin.membership
        cert = SignedCertificate.decode(grant.certificate).unverified_certificate
        node_id = node_id_from_public_key(peer.identity_pubkey)
        # A node is a member once its admission is committed on the consensus log;
        # the grant leaves only then (HandshakeFailed otherwise: the joiner retries,
        # and the token's use is given back so the retry can spend it).
        try:
            log_index = await self._commit_admission(node_id, grant.certificate)
        except BaseException:
            self.admin.refund(token_id)
            raise
        log.info(
            "admitted node",
            extra={
                "peer_node_id": node_id,
                "peer_name": request.node_name,
                "peer_serial": cert.serial,
                "log_index": log_index,
            },
        )
        if self.audit is not None:  # durable before the grant leaves
            await self.audit.append(
                kinds.NODE_ADMITTED,
                {"node_id": node_id, "node_name": request.node_name, "serial": cert.serial},
            )
            await self.audit.append(kinds.TOKEN_USED, {"token_id": token_id, "node_id": node_id})
        return grant

    def _use_membership(self, membership: Membership) -> None:
        self.membership = membership
        self.creds = replace(self.creds, certificate=membership.certificate)
        self.peers.creds = self.creds
        ca = self.store.load_ca()
        self.admin = Admin(self.store, ca, membership) if ca is not None else None

    async def become_member(self) -> None:
        """Load our membership, or join a cluster (by --peer or mDNS), or found one."""
        membership = self.store.load()
        seeds = list(self.config.network.peers)
        if membership is None and not seeds and self.config.discovery.mdns:
            seeds = await self._discover_seeds()
        if membership is None and seeds:
            membership = await self._join(seeds)
        elif membership is None:
            membership = self.store.found(self.identity, self.name, wall_clock())
            self._use_membership(membership)
            assert self.admin is not None
            token, info = self.admin.create_token(
                wall_clock(), FOUNDING_TOKEN_TTL_S, FOUNDING_TOKEN_USES
            )
            log.info("founded cluster", extra={"cluster_id": membership.cluster_id})
            self._pending_audit += [
                (
                    kinds.CLUSTER_FOUNDED,
                    {"cluster_id": membership.cluster_id, "node_name": self.name},
                ),
                (kinds.TOKEN_CREATED, token_audit_body(info)),
            ]
            self._announce(
                f"Founded cluster {membership.cluster_id}. Join other nodes within the hour "
                f"(up to {FOUNDING_TOKEN_USES}) with:\n"
                f"  vramancer-node join --peer <this-host>:<port> --token {token}"
            )
        self._use_membership(membership)
        log.info(
            "cluster member",
            extra={
                "cluster_id": membership.cluster_id,
                "serial": membership.cert.serial,
                "roles": list(membership.cert.roles),
            },
        )

    async def _discover_seeds(self) -> list[str]:
        """Before joining: look for a cluster on the LAN with mDNS."""
        log.info("looking for a cluster with mDNS", extra={"wait_s": DISCOVERY_WAIT_S})
        found = await browse(
            node_id=self.identity.node_id,
            interface=self.config.discovery.mdns_interface,
            wait_s=DISCOVERY_WAIT_S,
        )
        clusters = sorted({node.cluster_id for node in found})
        if self._token is None:
            if clusters:
                raise StartupError(
                    f"found cluster(s) {', '.join(clusters)} on the LAN: pass --token TOKEN to "
                    f"join, or --no-mdns to found a new cluster"
                )
            return []
        fingerprint = parse_token(self._token).ca_fingerprint
        addresses = [
            a for node in found if node.ca_fingerprint == fingerprint for a in node.addresses
        ]
        if not addresses:
            raise StartupError(
                f"no node of the token's cluster answered on mDNS within {DISCOVERY_WAIT_S:g} s: "
                f"pass --peer HOST:PORT"
            )
        log.info("found the cluster with mDNS", extra={"addresses": addresses})
        return addresses

    async def _join(self, seeds: list[str]) -> Membership:
        if self._token is None:
            raise StartupError(
                f"this node is not a member of a cluster yet: pass --token TOKEN "
                f"(from `vramancer token create` on an admin) to join via "
                f"{', '.join(seeds)}"
            )
        failures = []
        for address in seeds:
            try:
                admission = await join_via(
                    address,
                    self.creds,
                    self._token,
                    self.name,
                    self.config.network.connect_timeout_s,
                )
            except trio.TooSlowError:
                failures.append(f"{address}: timed out")
                continue
            except HandshakeFailed as exc:
                failures.append(f"{address}: {exc}")
                continue
            except OSError as exc:
                failures.append(f"{address}: {exc.strerror or exc}")
                continue
            self._joined_via = address
            membership = Membership(
                ca_pubkey=admission.ca_pubkey,
                certificate=admission.certificate,
                gossip_keys=(admission.gossip_key,),
            )
            self.store.save(membership)
            self._pending_audit.append(
                (
                    kinds.NODE_ADMITTED,
                    {
                        "node_id": self.identity.node_id,
                        "node_name": self.name,
                        "serial": admission.serial,
                    },
                )
            )
            log.info(
                "admitted to cluster",
                extra={
                    "cluster_id": membership.cluster_id,
                    "serial": admission.serial,
                    "by_node_id": admission.peer.node_id,
                    "by_serial": admission.peer.certificate.serial
                    if admission.peer.certificate
                    else None,
                    "by_address": address,
                },
            )
            return membership
        raise StartupError("could not join the cluster: " + "; ".join(failures))
