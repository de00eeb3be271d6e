"""The replicated control state: members, revocations, placement epochs, federation.

Theory of operation
-------------------
:class:`ControlState` is the state machine behind the Raft log.  The shell hands it
every committed entry, in log order, with :meth:`ControlState.apply`; it decodes the
command (:mod:`protocol.control.codec`), judges it against the current state and
either changes the state (:class:`Applied`) or leaves it untouched
(:class:`Rejected`).  Both outcomes are deterministic functions of (state, bytes):
every node applies the same entries and so reaches the same state and the same
verdicts.  Nothing a log entry holds can raise out of ``apply``: a malformed or
senseless command is a rejection, recorded with its index and reason (the last
:data:`REJECTIONS_KEPT` of them, and a total), never a crash.

The rules, command by command:

========================  ========================================================
``AdmitMember``           the certificate decodes, carries the cluster CA's signature,
                          its key hashes to ``node_id``, its serial is neither
                          revoked nor held by another member; a
                          node already admitted may be admitted again only when its
                          old certificate was revoked (a new certificate replaces it)
``Revoke``                the serial is not revoked yet (an unknown serial may be
                          revoked: it could be a leaked certificate never admitted)
``PlacementEpoch``        epoch = previous epoch of the model + 1 (1 for the first);
                          the stages cover ``[0, n)`` contiguously, one per device,
                          each on an admitted member whose certificate is not revoked
``FederationLinkAdd``     the address is not linked yet
``FederationLinkRemove``  the address is linked, with that CA fingerprint
========================  ========================================================

Snapshots: :meth:`ControlState.snapshot` is one version byte and a canonical msgpack
array of the whole state (sorted, so equal states give equal bytes); :meth:`restore`
decodes one strictly (``RemoteProtocolError``: a snapshot comes from a leader).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import msgpack

from crypto.certs import (
    CERT_SIGNATURE_CONTEXT,
    CertificateError,
    SignedCertificate,
    ed25519_verify,
)
from crypto.identity import node_id_from_public_key
from protocol.control.codec import decode_command, encode_command
from protocol.control.commands import (
    AdmitMember,
    Command,
    FederationLink,
    FederationLinkAdd,
    FederationLinkRemove,
    PlacementEpoch,
    Revoke,
)
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.wire import array, fail, uint

SNAPSHOT_VERSION = 1
"""First byte of a snapshot; bump on any incompatible change."""
SNAPSHOT_BYTES_MAX = 64 * 1024 * 1024
"""Largest snapshot accepted: thousands of members and models fit in a few MiB."""
REJECTIONS_KEPT = 32
"""Recent rejections kept (and shown); older ones only count in ``rejected_total``."""
_ITEMS_MAX = 1 << 20


@dataclass(frozen=True, kw_only=True, slots=True)
class Member:
    """An admitted node and the certificate its admission committed."""

    node_id: str
    certificate: bytes
    """The encoded signed certificate."""
    serial: int
    node_name: str
    roles: tuple[str, ...]
    admitted_index: int
    """Log index of the admission."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Revocation:
    serial: int
    reason: str
    index: int
    """Log index of the revocation."""


@dataclass(frozen=True, kw_only=True, slots=True)
class CommittedPlacement:
    placement: PlacementEpoch
    index: int
    """Log index of the placement epoch."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Applied:
    """A committed command changed the state."""

    index: int
    command: Command


@dataclass(frozen=True, kw_only=True, slots=True)
class Rejected:
    """A committed entry changed nothing; every node rejects it the same way."""

    index: int
    command: Command | None
    """The decoded command, or None if the entry did not decode."""
    reason: str


Outcome = Applied | Rejected


class ControlState:
    """The control state machine; see the module docstring."""

    def __init__(self, ca_pubkey: bytes | None = None) -> None:
        self.ca_pubkey = ca_pubkey
        """The cluster CA: an admitted certificate must carry its signature (None: not
        checked, for tests of the other rules)."""
        self.members: dict[str, Member] = {}
        self.revoked: dict[int, Revocation] = {}
        self.placements: dict[str, CommittedPlacement] = {}
        self.federation: dict[str, FederationLink] = {}
        self.applied_index = 0
        """Index of the last entry applied (commands and no-ops alike)."""
        self.rejected_total = 0
        self.rejections: deque[tuple[int, str]] = deque(maxlen=REJECTIONS_KEPT)

    # -- queries ----------------------------------------------------------------

    def revoked_serials(self) -> frozenset[int]:
        return frozenset(self.revoked)

    def active_members(self) -> list[Member]:
        """Members whose certificate is not revoked, by node id."""
        return [m for _, m in sorted(self.members.items()) if m.serial not in self.revoked]

    def is_active(self, node_id: str) -> bool:
        member = self.members.get(node_id)
        return member is not None and member.serial not in self.revoked

    def placement(self, model_id: str) -> CommittedPlacement | None:
        return self.placements.get(model_id)

    # -- applying ---------------------------------------------------------------

    def skip(self, index: int) -> None:
        """Account for a committed entry that carries no command (a leader's no-op,
        a configuration change)."""
        self._check_index(index)
        self.applied_index = index

    def apply(self, index: int, data: bytes) -> Outcome:
        """Apply the committed entry ``index`` holding ``data``."""
        self._check_index(index)
        self.applied_index = index
        try:
            command = decode_command(data)
        except RemoteProtocolError as exc:
            return self._reject(index, None, str(exc))
        reason = self._judge(index, command)
        if reason is not None:
            return self._reject(index, command, reason)
        return Applied(index=index, command=command)

    def _check_index(self, index: int) -> None:
        if isinstance(index, bool) or not isinstance(index, int) or index <= self.applied_index:
            raise LocalProtocolError(
                f"entry {index!r} applied out of order (last applied {self.applied_index})"
            )

    def _reject(self, index: int, command: Command | None, reason: str) -> Rejected:
        self.rejected_total += 1
        self.rejections.append((index, reason))
        return Rejected(index=index, command=command, reason=reason)

    def _judge(self, index: int, command: Command) -> str | None:
        """Change the state for ``command`` and return None, or return why not."""
        if isinstance(command, AdmitMember):
            return self._admit(index, command)
        if isinstance(command, Revoke):
            if command.serial in self.revoked:
                return f"serial {command.serial} is already revoked"
            self.revoked[command.serial] = Revocation(
                serial=command.serial, reason=command.reason, index=index
            )
            return None
        if isinstance(command, PlacementEpoch):
            return self._place(index, command)
        if isinstance(command, FederationLinkAdd):
            if command.link.address in self.federation:
                return f"{command.link.address} is already linked"
            self.federation[command.link.address] = command.link
            return None
        assert isinstance(command, FederationLinkRemove)  # the Command union is closed
        linked = self.federation.get(command.link.address)
        if linked is None:
            return f"{command.link.address} is not linked"
        if linked != command.link:
            return f"{command.link.address} is linked with another CA fingerprint"
        del self.federation[command.link.address]
        return None

    def _admit(self, index: int, command: AdmitMember) -> str | None:
        try:
            signed = SignedCertificate.decode(command.certificate)
            cert = signed.unverified_certificate
            node_id = node_id_from_public_key(cert.node_pubkey)
        except (CertificateError, ValueError) as exc:
            return f"admission of {command.node_id}: bad certificate: {exc}"
        if self.ca_pubkey is not None and not ed25519_verify(
            self.ca_pubkey, CERT_SIGNATURE_CONTEXT + signed.cert, signed.signature
        ):
            return f"admission of {command.node_id}: the certificate is not signed by the CA"
        if node_id != command.node_id:
            return f"admission of {command.node_id}: the certificate is for {node_id}"
        if cert.serial in self.revoked:
            return f"admission of {node_id}: serial {cert.serial} is revoked"
        if self.is_active(node_id):
            return f"{node_id} is already a member (serial {self.members[node_id].serial})"
        holder = next((m for m in self.members.values() if m.serial == cert.serial), None)
        if holder is not None:
            return f"admission of {node_id}: serial {cert.serial} belongs to {holder.node_id}"
        self.members[node_id] = Member(
            node_id=node_id,
            certificate=command.certificate,
            serial=cert.serial,
            node_name=cert.node_name,
            roles=cert.roles,
            admitted_index=index,
        )
        return None

    def _place(self, index: int, command: PlacementEpoch) -> str | None:
        previous = self.placements.get(command.model_id)
        expected = 1 if previous is None else previous.placement.epoch + 1
        if command.epoch != expected:
            return f"placement of {command.model_id}: epoch {command.epoch}, expected {expected}"
        first = 0
        devices = set()
        for number, stage in enumerate(command.stages):
            if stage.first_layer != first:
                return f"placement of {command.model_id}: stage {number} must start at {first}"
            first = stage.last_layer_exclusive
            if (stage.node_id, stage.device_index) in devices:
                return f"placement of {command.model_id}: device used twice by stage {number}"
            devices.add((stage.node_id, stage.device_index))
            if not self.is_active(stage.node_id):
                return (
                    f"placement of {command.model_id}: stage {number} is on {stage.node_id},"
                    " not an active member"
                )
        self.placements[command.model_id] = CommittedPlacement(placement=command, index=index)
        return None

    # -- snapshots --------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The whole state as canonical bytes (equal states, equal bytes)."""
        wire = [
            self.applied_index,
            [[m.node_id, m.certificate, m.admitted_index] for _, m in sorted(self.members.items())],
            [[r.serial, r.reason, r.index] for _, r in sorted(self.revoked.items())],
            [[encode_command(p.placement), p.index] for _, p in sorted(self.placements.items())],
            [[link.address, link.ca_fingerprint] for _, link in sorted(self.federation.items())],
            self.rejected_total,
            [[index, reason] for index, reason in self.rejections],
        ]
        packed: bytes = msgpack.packb(wire, use_bin_type=True)
        return bytes((SNAPSHOT_VERSION,)) + packed

    @classmethod
    def restore(cls, data: bytes, ca_pubkey: bytes | None = None) -> ControlState:
        """Rebuild a state from :meth:`snapshot` bytes; ``b""`` is the empty state."""
        state = cls(ca_pubkey)
        if data == b"":
            return state
        if not isinstance(data, bytes) or len(data) > SNAPSHOT_BYTES_MAX:
            raise RemoteProtocolError(f"a control snapshot is at most {SNAPSHOT_BYTES_MAX} bytes")
        if data[0] != SNAPSHOT_VERSION:
            raise RemoteProtocolError(f"unknown control snapshot version {data[0]}")
        try:
            wire = msgpack.unpackb(
                data[1:],
                raw=False,
                use_list=False,
                max_array_len=_ITEMS_MAX,
                max_map_len=0,
                max_ext_len=0,
            )
            state._load(array(wire, "control snapshot", 7))
        except (ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
            raise RemoteProtocolError(f"malformed control snapshot: {exc}") from exc
        if state.snapshot() != data:
            raise RemoteProtocolError("control snapshot is not in canonical form")
        return state

    def _load(self, wire: tuple[Any, ...]) -> None:
        applied, members, revoked, placements, federation, rejected_total, rejections = wire
        self.applied_index = uint(applied, "snapshot applied_index")
        for item in array(members, "snapshot members"):
            node_id, certificate, index = array(item, "snapshot member", 3)
            admission = AdmitMember(node_id=node_id, certificate=certificate)
            self.members.pop(node_id, None)
            if self._admit(uint(index, "member index"), admission) is not None:
                raise fail("snapshot member", "a valid admission", node_id)
        for item in array(revoked, "snapshot revocations"):
            serial, reason, index = array(item, "snapshot revocation", 3)
            revoke = Revoke(serial=uint(serial, "revoked serial"), reason=reason)
            self.revoked[revoke.serial] = Revocation(
                serial=revoke.serial, reason=revoke.reason, index=uint(index, "revocation index")
            )
        for item in array(placements, "snapshot placements"):
            data, index = array(item, "snapshot placement", 2)
            command = decode_command(data)
            if not isinstance(command, PlacementEpoch):
                raise fail("snapshot placement", "a placement epoch", command)
            self.placements[command.model_id] = CommittedPlacement(
                placement=command, index=uint(index, "placement index")
            )
        for item in array(federation, "snapshot federation"):
            address, fingerprint = array(item, "snapshot federation link", 2)
            link = FederationLink(address=address, ca_fingerprint=fingerprint)
            self.federation[link.address] = link
        self.rejected_total = uint(rejected_total, "snapshot rejected_total")
        for item in array(rejections, "snapshot rejections"):
            index, reason = array(item, "snapshot rejection", 2)
            if not isinstance(reason, str):
                raise fail("snapshot rejection reason", "a str", reason)
            self.rejections.append((uint(index, "rejection index"), reason))
