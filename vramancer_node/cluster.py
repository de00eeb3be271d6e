"""Cluster membership on disk: the CA, this node's certificate, tokens, revocations.

Theory of operation
-------------------
A node is a *member* once ``cluster/membership`` holds its certificate, the CA
public key and the gossip keyring; from then on restarts need no token.  The node
that founds a cluster, and later any admin, also holds ``cluster/ca.key`` (the CA's
Ed25519 seed, mode 0600) and ``cluster/tokens`` (the join-token registry, hashed) —
that makes it able to admit.

The founder is the one admin and allocates certificate serials from
``next_serial``.  Admission itself is committed on the consensus log before the
grant leaves (:mod:`vramancer_node.consensuswiring`), and revocations are consensus
entries too; the local ``revoked_serials`` set is still honoured alongside them.

Every file goes through :func:`vramancer_node.atomic.atomic_write`.  A file that
does not parse is a :class:`ClusterStateError` naming it — never silently replaced.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import msgpack
import nacl.utils

from crypto import certs
from crypto.binding import GOSSIP_KEY_BYTES, AdmissionGrant, IdentityPayload, JoinRequest
from crypto.certs import ClusterCA, MembershipCertificate, SignedCertificate
from crypto.identity import (
    IdentityError,
    NodeIdentity,
    decode_key_file,
    encode_key_file,
)
from crypto.tokens import TokenError, TokenRegistry
from vramancer_node.atomic import atomic_write

CLUSTER_DIR_NAME = "cluster"
MEMBERSHIP_FILE = "membership"
CA_KEY_FILE = "ca.key"
TOKENS_FILE = "tokens"
STATE_VERSION = 1

MEMBER_CERT_TTL_S = 365 * 24 * 3600
"""Certificates last a year; renewal arrives with consensus."""
FOUNDING_TOKEN_TTL_S = 3600
FOUNDING_TOKEN_USES = 10
"""The token printed at founding admits the first few devices within the hour."""
TOKEN_TTL_S_DEFAULT = 3600
TOKEN_USES_DEFAULT = 1
ROLES_FOUNDER = ("admin", "member")
ROLES_JOINER = ("member",)


class ClusterStateError(Exception):
    """A cluster state file is unreadable or inconsistent."""


@dataclass(frozen=True, kw_only=True)
class Membership:
    """This node's standing in its cluster."""

    ca_pubkey: bytes
    certificate: bytes
    """Our encoded SignedCertificate."""
    gossip_keys: tuple[bytes, ...]
    """Keyring, newest first: the first one seals, every one opens."""
    revoked_serials: frozenset[int] = field(default_factory=frozenset)
    next_serial: int = 1
    """Admins only: the next certificate serial to hand out."""

    @property
    def cert(self) -> MembershipCertificate:
        return SignedCertificate.decode(self.certificate).unverified_certificate

    @property
    def cluster_id(self) -> str:
        return certs.cluster_id_of(self.ca_pubkey)

    def encode(self) -> bytes:
        packed: bytes = msgpack.packb(
            {
                "v": STATE_VERSION,
                "ca_pubkey": self.ca_pubkey,
                "certificate": self.certificate,
                "gossip_keys": list(self.gossip_keys),
                "revoked_serials": sorted(self.revoked_serials),
                "next_serial": self.next_serial,
            },
            use_bin_type=True,
        )
        return packed

    @classmethod
    def decode(cls, data: bytes, where: Path) -> Membership:
        try:
            body = msgpack.unpackb(data, raw=False)
            if not isinstance(body, dict) or body.get("v") != STATE_VERSION:
                raise ValueError(
                    f"unknown format version {body.get('v') if isinstance(body, dict) else None!r}"
                )
            membership = cls(
                ca_pubkey=bytes(body["ca_pubkey"]),
                certificate=bytes(body["certificate"]),
                gossip_keys=tuple(bytes(k) for k in body["gossip_keys"]),
                revoked_serials=frozenset(int(s) for s in body["revoked_serials"]),
                next_serial=int(body["next_serial"]),
            )
            membership.cert  # noqa: B018 - decoding checks the certificate's shape
        except (
            ValueError,
            KeyError,
            TypeError,
            msgpack.UnpackException,
            certs.CertificateError,
        ) as exc:
            raise ClusterStateError(f"{where} is corrupt: {exc}") from exc
        if not membership.gossip_keys or any(
            len(k) != GOSSIP_KEY_BYTES for k in membership.gossip_keys
        ):
            raise ClusterStateError(f"{where} is corrupt: bad gossip keyring")
        return membership


class ClusterStore:
    """The ``cluster/`` directory of a node's state."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir) / CLUSTER_DIR_NAME

    def _path(self, name: str) -> Path:
        return self.dir / name

    def _read(self, name: str) -> bytes | None:
        path = self._path(name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ClusterStateError(f"cannot open {path}: {exc}") from exc
        with os.fdopen(fd, "rb") as handle:
            if stat.S_IMODE(os.fstat(handle.fileno()).st_mode) & 0o077:
                raise ClusterStateError(f"{path} is readable by other users; it must be 0600")
            return handle.read()

    def _write(self, name: str, data: bytes, *, exclusive: bool = False) -> None:
        self.dir.mkdir(mode=0o700, exist_ok=True)
        atomic_write(self._path(name), data, exclusive=exclusive)

    # -- membership -----------------------------------------------------------

    def load(self) -> Membership | None:
        data = self._read(MEMBERSHIP_FILE)
        return None if data is None else Membership.decode(data, self._path(MEMBERSHIP_FILE))

    def save(self, membership: Membership) -> None:
        self._write(MEMBERSHIP_FILE, membership.encode())

    # -- admin material -------------------------------------------------------

    def load_ca(self) -> ClusterCA | None:
        data = self._read(CA_KEY_FILE)
        if data is None:
            return None
        try:
            return ClusterCA(signing_key=decode_key_file(data).signing_key)
        except IdentityError as exc:
            raise ClusterStateError(f"{self._path(CA_KEY_FILE)}: {exc}") from exc

    def load_tokens(self, ca: ClusterCA) -> TokenRegistry:
        data = self._read(TOKENS_FILE)
        if data is None:
            return TokenRegistry(ca_fingerprint=ca.fingerprint)
        try:
            return TokenRegistry.from_export(msgpack.unpackb(data, raw=False))
        except (TokenError, ValueError, msgpack.UnpackException) as exc:
            raise ClusterStateError(f"{self._path(TOKENS_FILE)} is corrupt: {exc}") from exc

    def save_tokens(self, registry: TokenRegistry) -> None:
        self._write(TOKENS_FILE, msgpack.packb(registry.export(), use_bin_type=True))

    def found(self, identity: NodeIdentity, node_name: str, now: float) -> Membership:
        """Create a cluster: CA, our admin certificate, gossip key.  Fails if one exists."""
        if self.load() is not None:
            raise ClusterStateError(f"{self.dir} already holds a cluster membership")
        ca = ClusterCA.generate()
        self._write(
            CA_KEY_FILE, encode_key_file(NodeIdentity(signing_key=ca.signing_key)), exclusive=True
        )
        signed = certs.issue(
            ca,
            node_pubkey=identity.public_key,
            node_name=node_name,
            roles=ROLES_FOUNDER,
            serial=1,
            now=now,
            ttl_s=MEMBER_CERT_TTL_S,
        )
        membership = Membership(
            ca_pubkey=ca.pubkey,
            certificate=signed.encode(),
            gossip_keys=(nacl.utils.random(GOSSIP_KEY_BYTES),),
            next_serial=2,
        )
        self.save(membership)
        return membership


class Admin:
    """The admitting side of a node that holds the CA key (tokens, serials)."""

    def __init__(self, store: ClusterStore, ca: ClusterCA, membership: Membership) -> None:
        self.store = store
        self.ca = ca
        self.membership = membership
        self.tokens = store.load_tokens(ca)

    def create_token(
        self, now: float, ttl_s: int, uses: int, roles: tuple[str, ...] = ROLES_JOINER
    ) -> tuple[str, dict[str, Any]]:
        """Make a join token; the text is shown once and never stored."""
        text, record = self.tokens.create(now=now, ttl_s=ttl_s, uses=uses, roles=roles)
        self.store.save_tokens(self.tokens)
        return text, {
            "token_id": record.token_id,
            "expires_at": record.expires_at,
            "uses": record.uses_left,
            "roles": list(record.roles),
        }

    def admit(
        self, request: JoinRequest, peer: IdentityPayload, h: bytes, now: float
    ) -> tuple[AdmissionGrant, str]:
        """Redeem the joiner's token and certify it; state is saved before the grant leaves.

        Returns the grant and the id of the token that was spent.
        """
        record = self.tokens.redeem(request.token_proof, h, now)
        serial = self.membership.next_serial
        signed = certs.issue(
            self.ca,
            node_pubkey=peer.identity_pubkey,
            node_name=request.node_name,
            roles=record.roles,
            serial=serial,
            now=now,
            ttl_s=MEMBER_CERT_TTL_S,
        )
        self.membership = replace(self.membership, next_serial=serial + 1)
        self.store.save(self.membership)
        self.store.save_tokens(self.tokens)
        grant = AdmissionGrant(
            certificate=signed.encode(),
            ca_pubkey=self.ca.pubkey,
            gossip_key=self.membership.gossip_keys[0],
        )
        return grant, record.token_id

    def refund(self, token_id: str) -> None:
        """The admission paid with ``token_id`` was not committed: its use is given back."""
        if self.tokens.refund(token_id) is not None:
            self.store.save_tokens(self.tokens)


__all__ = [
    "Admin",
    "ClusterStateError",
    "ClusterStore",
    "Membership",
]
