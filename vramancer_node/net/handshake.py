"""The daemon handshake: Noise XX, identity binding, challenge-response, admission.

Theory of operation
-------------------
Every connection between two nodes starts here (DESIGN.md sections 3 and 4).

1. **Noise XX** (``Noise_XX_25519_ChaChaPoly_SHA256``, prologue
   ``vramancer/noise/1``) with a Noise static key that lives only as long as the
   process.  Messages 2 and 3 carry each side's *identity payload*: its Ed25519
   identity key, its membership certificate (none before admission) and a
   signature binding the Noise static key to the identity key.
2. **Challenge-response**: each side sends ``Auth{Sign(id_key, h)}`` over the
   finished channel and checks the other's.  ``h`` is unique per session, so a
   recorded or relayed signature proves nothing.
3. **Verdicts**: each side checks the other's certificate against the cluster CA,
   the revocation set and the clock, then sends ``Welcome`` or a ``Refusal`` naming
   the reason, and reads the other's verdict.  A node without a certificate instead
   sends ``JoinRequest{token proof}``; an admin answers ``AdmissionGrant`` (a new
   certificate, the CA key, the gossip key) or ``Refusal``.  The joiner trusts a
   grant only if the CA key matches the fingerprint in its token and both the new
   certificate and the responder's own verify under it.

Both sides always send before they receive, so neither can wait on the other.

Error handling
--------------
Every failure raises :class:`HandshakeFailed` with a short ``reason`` (a metric
label) and a message for the log.  The caller applies timeouts (cancel scopes) and
closes the transport; nothing here retries.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

import trio

from crypto import binding, certs, tokens
from crypto.binding import (
    AdmissionGrant,
    Auth,
    BindingError,
    BindingFormatError,
    IdentityPayload,
    JoinRequest,
    Refusal,
    RefusalReason,
    Welcome,
)
from crypto.certs import CertificateError, MembershipCertificate, SignedCertificate
from crypto.identity import NodeIdentity, node_id_from_public_key
from crypto.noise import HandshakeState, KeyPair
from crypto.noise.errors import NoiseError
from crypto.tokens import TokenError
from protocol.errors import RemoteProtocolError
from protocol.frames import ControlFrame, MessageDecoder, frame_length_prefix
from vramancer_node.net.securestream import RECEIVE_BYTES, SecureStream

PROLOGUE = b"vramancer/noise/1"
PROTOCOL_NAME = "Noise_XX_25519_ChaChaPoly_SHA256"
HANDSHAKE_PAYLOAD_BYTES_MAX = 16 * 1024
"""An identity payload is a certificate plus ~200 bytes; refuse anything bigger."""


class HandshakeFailed(Exception):
    """The handshake or admission did not complete; ``reason`` labels the metric."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """What this node proves itself with; one per process."""

    identity: NodeIdentity
    noise_static: KeyPair
    """Per-process Noise static key, never stored."""
    certificate: bytes | None
    """Our encoded ``SignedCertificate``; ``None`` until admitted."""
    software_version: str
    protocol_version: int

    # Computed once per instance (``dataclasses.replace`` makes a new one, so a new
    # certificate gets a new payload); a frozen dataclass without slots has the
    # ``__dict__`` that ``cached_property`` writes to.  Errors are not cached.

    @functools.cached_property
    def identity_payload(self) -> bytes:
        """Our identity payload for Noise messages 2 and 3; constant per instance."""
        return binding.encode_identity_payload(
            self.identity.signing_key,
            noise_static_pub=self.noise_static.public,
            certificate=self.certificate,
            software_version=self.software_version,
            protocol_version=self.protocol_version,
        )

    @functools.cached_property
    def node_name(self) -> str:
        """Our certified name (sent in ``Welcome``); raises if we have no certificate."""
        signed = SignedCertificate.decode(self.certificate or b"")
        return signed.unverified_certificate.node_name


@dataclass(frozen=True, kw_only=True)
class TrustPolicy:
    """How a member judges peers: the cluster CA, revocations and the clock."""

    ca_pubkey: bytes
    revoked_serials: Collection[int]
    now: Callable[[], float]
    """Wall-clock seconds (certificates carry Unix times)."""


@dataclass(frozen=True, kw_only=True)
class AuthenticatedPeer:
    """A peer whose identity, certificate and channel binding were all checked."""

    node_id: str
    public_key: bytes
    certificate: MembershipCertificate | None
    """None only on the admin's side of an admission: the joiner had none yet."""
    software_version: str
    handshake_hash: bytes


_REASON_LABELS = {reason: reason.name.lower() for reason in RefusalReason}


def refusal_for(error: Exception) -> Refusal:
    """The refusal to send a peer whose input raised ``error``."""
    try:
        reason = binding.refusal_reason_for(error)
    except ValueError:
        reason = RefusalReason.MALFORMED
    return Refusal(reason_code=reason, message=str(error)[: binding.REFUSAL_MESSAGE_CHARS_MAX])


# -- Noise ------------------------------------------------------------------------------


class _HandshakeIO:
    """Length-prefixed handshake messages over the raw transport."""

    def __init__(self, transport: trio.abc.Stream) -> None:
        self.transport = transport
        self.decoder = MessageDecoder()

    async def send(self, message: bytes) -> None:
        await self.transport.send_all(frame_length_prefix(len(message)) + message)

    async def receive(self) -> bytes:
        while (message := self.decoder.next_message()) is None:
            data = await self.transport.receive_some(RECEIVE_BYTES)
            if not data:
                raise HandshakeFailed("connection_lost", "the peer closed during the handshake")
            self.decoder.feed(data)
        return message


async def noise_handshake(
    transport: trio.abc.Stream, creds: Credentials, *, initiator: bool, await_auth: bool = True
) -> tuple[SecureStream, IdentityPayload, bytes]:
    """Run Noise XX and send our challenge-response; return stream, peer payload and ``h``.

    With ``await_auth=False`` the peer's ``Auth`` is left unread: the caller must pass
    ``auth_pending=True`` to :func:`exchange_verdicts` or :func:`respond`, which read
    and verify it after sending their own verdict — one round trip fewer.
    """
    hs = HandshakeState.initialize(
        protocol_name=PROTOCOL_NAME, initiator=initiator, prologue=PROLOGUE, s=creds.noise_static
    )
    payload = creds.identity_payload
    io = _HandshakeIO(transport)
    try:
        if initiator:
            await io.send(hs.write_message(b""))
            remote_payload = hs.read_message(await io.receive())
            await io.send(hs.write_message(payload))
        else:
            if hs.read_message(await io.receive()):
                raise HandshakeFailed("malformed", "handshake message 1 carried a payload")
            await io.send(hs.write_message(payload))
            remote_payload = hs.read_message(await io.receive())
        if len(remote_payload) > HANDSHAKE_PAYLOAD_BYTES_MAX:
            raise HandshakeFailed("malformed", "identity payload too large")
        assert hs.remote_static is not None  # XX always transmits it
        peer = binding.verify_identity_payload(remote_payload, hs.remote_static)
    except NoiseError as exc:
        raise HandshakeFailed(
            "noise", f"Noise handshake failed (wrong protocol version or tampering): {exc}"
        ) from exc
    except RemoteProtocolError as exc:
        raise HandshakeFailed("malformed", f"bad handshake framing: {exc}") from exc
    except BindingFormatError as exc:
        raise HandshakeFailed("malformed", f"bad identity payload: {exc}") from exc
    except BindingError as exc:
        raise HandshakeFailed("bad_signature", f"identity binding failed: {exc}") from exc
    h = hs.handshake_hash
    send_cs, recv_cs = hs.split()
    stream = SecureStream(transport, send_cs, recv_cs, leftover=io.decoder.take_pending())
    await stream.send_control(
        Auth(signature=binding.sign_handshake_hash(creds.identity.signing_key, h)).encode()
    )
    if await_auth:
        await receive_auth(stream, peer, h)
    return stream, peer, h


async def receive_auth(stream: SecureStream, peer: IdentityPayload, h: bytes) -> None:
    """Read the peer's ``Auth`` and check its signature over this session's ``h``."""
    auth = await receive_message(stream)
    if not isinstance(auth, Auth):
        raise HandshakeFailed("malformed", f"expected Auth, got {type(auth).__name__}")
    try:
        binding.verify_handshake_signature(peer.identity_pubkey, h, auth.signature)
    except BindingError as exc:
        raise HandshakeFailed("bad_signature", f"challenge-response failed: {exc}") from exc


async def receive_message(stream: SecureStream) -> binding.AdmissionMessage:
    """The next control message; a Refusal from the peer raises HandshakeFailed."""
    try:
        frame = await stream.receive_frame()
    except RemoteProtocolError as exc:
        raise HandshakeFailed("malformed", f"bad frame: {exc}") from exc
    except trio.BrokenResourceError as exc:
        raise HandshakeFailed("connection_lost", f"the peer went away: {exc}") from exc
    if not isinstance(frame, ControlFrame):
        raise HandshakeFailed("malformed", f"expected a control frame, got {type(frame).__name__}")
    try:
        message = binding.decode_admission_message(frame.payload)
    except BindingError as exc:
        raise HandshakeFailed("malformed", f"bad control message: {exc}") from exc
    if isinstance(message, Refusal):
        raise HandshakeFailed(
            "refused_by_peer",
            f"the peer refused: {message.reason_code.name.lower()}: {message.message}",
        )
    return message


# -- verdicts ---------------------------------------------------------------------------


def check_certificate(peer: IdentityPayload, policy: TrustPolicy) -> MembershipCertificate:
    """Verify the peer's certificate and that it was issued to the key it proved."""
    signed = peer.signed_certificate  # decoded strictly with the payload
    if signed is None:
        raise certs.CertificateFormatError("the peer presented no certificate")
    cert = certs.verify(
        signed, policy.ca_pubkey, now=policy.now(), revoked_serials=policy.revoked_serials
    )
    if cert.node_pubkey != peer.identity_pubkey:
        raise certs.BadSignatureError(f"certificate serial {cert.serial} was issued to another key")
    return cert


def _version_error(peer: IdentityPayload, creds: Credentials) -> Refusal | None:
    if peer.protocol_version != creds.protocol_version:
        return Refusal(
            reason_code=RefusalReason.VERSION_MISMATCH,
            message=f"protocol {peer.protocol_version} != {creds.protocol_version}",
        )
    return None


async def _refuse(stream: SecureStream, refusal: Refusal, *, what: str) -> HandshakeFailed:
    """Tell the peer why, and build the local error to raise."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.send_control(refusal.encode())  # else it learns by the closed socket
    label = _REASON_LABELS[refusal.reason_code]
    return HandshakeFailed(label, f"refused {what}: {label}: {refusal.message}")


def _peer(
    payload: IdentityPayload, cert: MembershipCertificate | None, h: bytes
) -> AuthenticatedPeer:
    return AuthenticatedPeer(
        node_id=node_id_from_public_key(payload.identity_pubkey),
        public_key=payload.identity_pubkey,
        certificate=cert,
        software_version=payload.software_version,
        handshake_hash=h,
    )


async def exchange_verdicts(
    stream: SecureStream,
    peer: IdentityPayload,
    h: bytes,
    creds: Credentials,
    policy: TrustPolicy,
    *,
    auth_pending: bool = False,
) -> AuthenticatedPeer:
    """Member to member: judge each other's certificate, send and read the verdicts.

    With ``auth_pending`` the peer's ``Auth`` is read here: after our ``Welcome`` went
    out (it reveals nothing the certificate did not), but before we read its verdict
    or refuse it — a refusal is only ever sent to a peer that proved its key.
    """
    refusal = _version_error(peer, creds)
    cert = None
    if refusal is None:
        try:
            cert = check_certificate(peer, policy)
        except CertificateError as exc:
            refusal = refusal_for(exc)
    if refusal is not None:
        if auth_pending:
            await receive_auth(stream, peer, h)
        raise await _refuse(stream, refusal, what="the peer")
    await stream.send_control(Welcome(node_name=creds.node_name).encode())
    if auth_pending:
        await receive_auth(stream, peer, h)
    verdict = await receive_message(stream)
    if not isinstance(verdict, Welcome):
        raise HandshakeFailed("malformed", f"expected Welcome, got {type(verdict).__name__}")
    return _peer(peer, cert, h)


# -- admission --------------------------------------------------------------------------

Admitter = Callable[[JoinRequest, IdentityPayload, bytes], Awaitable[AdmissionGrant]]
"""The admin's decision on a join request (raises TokenError to refuse).  Async, so the
admin can make the admission durable (state file, audit record) before the grant leaves."""


async def respond(
    stream: SecureStream,
    peer: IdentityPayload,
    h: bytes,
    creds: Credentials,
    policy: TrustPolicy,
    admitter: Admitter | None,
    *,
    auth_pending: bool = False,
) -> AuthenticatedPeer:
    """The responder's side after :func:`noise_handshake`: a member, or a joiner."""
    if peer.certificate is not None:
        return await exchange_verdicts(stream, peer, h, creds, policy, auth_pending=auth_pending)
    if auth_pending:
        await receive_auth(stream, peer, h)
    request = await receive_message(stream)
    if not isinstance(request, JoinRequest):
        raise await _refuse(
            stream,
            Refusal(reason_code=RefusalReason.NOT_ADMITTED, message="present a certificate"),
            what="a node without certificate",
        )
    refusal = _version_error(peer, creds)
    if refusal is None and admitter is None:
        refusal = Refusal(
            reason_code=RefusalReason.NOT_ADMIN,
            message="this node cannot admit members (it holds no cluster CA key)",
        )
    if refusal is not None:
        raise await _refuse(stream, refusal, what=f"join of {request.node_name!r}")
    assert admitter is not None
    try:
        grant = await admitter(request, peer, h)
    except (TokenError, CertificateError) as exc:
        raise await _refuse(
            stream, refusal_for(exc), what=f"join of {request.node_name!r}"
        ) from exc
    await stream.send_control(grant.encode())
    cert = SignedCertificate.decode(grant.certificate).unverified_certificate  # we issued it
    return _peer(peer, cert, h)


@dataclass(frozen=True, kw_only=True)
class Admission:
    """What a joiner keeps after a verified grant."""

    peer: AuthenticatedPeer
    certificate: bytes
    ca_pubkey: bytes
    gossip_key: bytes
    serial: int
    roles: tuple[str, ...]


async def request_admission(
    stream: SecureStream,
    peer: IdentityPayload,
    h: bytes,
    creds: Credentials,
    token: str,
    node_name: str,
    now: Callable[[], float],
) -> Admission:
    """The joiner's side: prove the token, then check the grant before trusting it."""
    await stream.send_control(
        JoinRequest(token_proof=tokens.token_proof(token, h), node_name=node_name).encode()
    )
    grant = await receive_message(stream)
    if not isinstance(grant, AdmissionGrant):
        raise HandshakeFailed("malformed", f"expected AdmissionGrant, got {type(grant).__name__}")
    if not tokens.ca_matches(token, grant.ca_pubkey):
        raise HandshakeFailed(
            "ca_mismatch",
            "the responder's cluster CA does not match the fingerprint in the token: "
            "refusing a rogue responder",
        )
    policy = TrustPolicy(ca_pubkey=grant.ca_pubkey, revoked_serials=(), now=now)
    try:
        responder_cert = check_certificate(peer, policy)
        own = certs.verify(
            SignedCertificate.decode(grant.certificate),
            grant.ca_pubkey,
            now=now(),
            revoked_serials=(),
        )
    except CertificateError as exc:
        raise HandshakeFailed("rogue_responder", f"the grant does not verify: {exc}") from exc
    if own.node_pubkey != creds.identity.public_key:
        raise HandshakeFailed("rogue_responder", "the granted certificate is for another key")
    return Admission(
        peer=_peer(peer, responder_cert, h),
        certificate=grant.certificate,
        ca_pubkey=grant.ca_pubkey,
        gossip_key=grant.gossip_key,
        serial=own.serial,
        roles=own.roles,
    )
