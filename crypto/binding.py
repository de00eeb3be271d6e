"""Identity binding for the Noise XX handshake, and the admission messages that follow.

Theory of operation
-------------------
The Noise static key lives only as long as the process and is never stored, so on its own
it says nothing about who is at the other end.  As libp2p does, each side binds it to its
long-lived Ed25519 identity key: handshake messages 2 (responder) and 3 (initiator) carry
an *identity payload*, a canonical msgpack map::

    {version: 1, identity_pubkey: 32 bytes, certificate: bytes | nil,
     static_sig: Sign(id_key, STATIC_KEY_CONTEXT + noise_static_pub),
     software_version: str, protocol_version: int}

``certificate`` is an encoded :class:`crypto.certs.SignedCertificate`, or nil for a joiner
that has none yet.  ``verify_identity_payload(payload, remote_noise_static)`` checks the
encoding and that the identity key signed the static key *the handshake authenticated*:
the caller passes the remote static from its Noise state, never one taken from the
payload.  It neither verifies the certificate (``crypto.certs.verify`` with the revocation
set does) nor compares protocol versions (the caller's policy, ``VERSION_MISMATCH``).

Challenge-response: once the handshake is done each side sends
``sign_handshake_hash(id_key, h)``, a signature of ``HANDSHAKE_CONTEXT + h``, and checks
the peer's with ``verify_handshake_signature`` against the payload's identity key.  ``h``
is unique per session and mixes both sides' ephemerals, so a signature recorded in one
session proves nothing in another (replay), and a man in the middle running two sessions
has two different ``h`` (relay).  The distinct contexts keep the identity key's two kinds
of signature, and the CA's certificate signatures, from standing in for one another.

Admission: a node without a certificate sends ``JoinRequest{token_proof, node_name}``
(``crypto.tokens.token_proof`` over the same ``h``) and an admin answers
``AdmissionGrant{certificate, ca_pubkey, gossip_key}`` or ``Refusal{reason_code,
message}``.  The joiner must check ``ca_pubkey`` against its token
(``crypto.tokens.ca_matches``) and verify the certificate before trusting the grant.  Each
message is a canonical msgpack map with a ``type`` key; ``decode_admission_message``
returns the matching dataclass.  ``AdmissionMessageType`` and ``RefusalReason`` are wire
values: append only, never renumbered or reused.

Errors
------
::

    BindingError
    ├── BindingFormatError            malformed, oversized or non-canonical payload/message
    └── BindingSignatureError         a signature by the identity key does not verify
        ├── StaticKeySignatureError   the identity key did not sign this Noise static key
        └── HandshakeSignatureError   no valid signature over this session's handshake hash

``refusal_reason_for`` maps these, and the errors of ``crypto.certs`` and
``crypto.tokens``, to the ``RefusalReason`` sent to the peer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar

import nacl.signing

from crypto.certs import (
    ED25519_KEY_BYTES,
    ED25519_SIGNATURE_BYTES,
    SIGNED_CERT_BYTES_MAX,
    BadSignatureError,
    CertificateExpiredError,
    CertificateFormatError,
    CertificateRevokedError,
    SignedCertificate,
    UnknownClusterError,
    build_record,
    ed25519_verify,
    ed25519_verify_cached,
    encode_record,
    require_bytes,
    require_int,
    require_node_name,
    require_str,
    unpack_map,
)
from crypto.tokens import (
    HANDSHAKE_HASH_BYTES,
    TOKEN_PROOF_BYTES,
    BadTokenProofError,
    TokenExhaustedError,
    TokenExpiredError,
    TokenFormatError,
    UnknownTokenError,
)

IDENTITY_PAYLOAD_VERSION = 1
IDENTITY_PAYLOAD_BYTES_MAX = 8192  # a certificate plus ~200 bytes; a Noise message holds 65535
ADMISSION_MESSAGE_BYTES_MAX = 8192
STATIC_KEY_CONTEXT = b"vramancer-noise-static-key:"
HANDSHAKE_CONTEXT = b"vramancer-noise-handshake:"
NOISE_STATIC_KEY_BYTES = 32  # X25519
GOSSIP_KEY_BYTES = 32  # XChaCha20-Poly1305
SOFTWARE_VERSION_CHARS_MAX = 64
PROTOCOL_VERSION_MAX = 2**16 - 1
REFUSAL_MESSAGE_CHARS_MAX = 256


class BindingError(Exception):
    """An identity payload, handshake signature or admission message is unacceptable."""


class BindingFormatError(BindingError):
    """Malformed, oversized or non-canonical identity payload or admission message."""


class BindingSignatureError(BindingError):
    """A signature by the peer's identity key does not verify."""


class StaticKeySignatureError(BindingSignatureError):
    """The identity key did not sign the Noise static key of this handshake."""


class HandshakeSignatureError(BindingSignatureError):
    """The signature over this session's handshake hash does not verify."""


class RefusalReason(IntEnum):
    """Why an admission or a handshake was refused.  Append only: wire values."""

    UNKNOWN_CLUSTER = 1
    CERTIFICATE_EXPIRED = 2
    CERTIFICATE_REVOKED = 3
    BAD_SIGNATURE = 4
    VERSION_MISMATCH = 5
    BAD_TOKEN = 6
    TOKEN_EXPIRED = 7
    TOKEN_EXHAUSTED = 8
    NOT_ADMITTED = 9
    MALFORMED = 10
    NOT_ADMIN = 11


class AdmissionMessageType(IntEnum):
    """The ``type`` key of admission messages.  Append only: wire values."""

    JOIN_REQUEST = 1
    ADMISSION_GRANT = 2
    REFUSAL = 3
    AUTH = 4
    WELCOME = 5


def _require_certificate(value: object, name: str) -> SignedCertificate:
    """An encoded ``SignedCertificate`` that decodes strictly (not verified), decoded."""
    data = require_bytes(value, name, bytes_max=SIGNED_CERT_BYTES_MAX, error=BindingFormatError)
    try:
        return SignedCertificate.decode(data)
    except CertificateFormatError as exc:
        raise BindingFormatError(f"{name}: {exc}") from exc


@dataclass(frozen=True, kw_only=True)
class IdentityPayload:
    """The identity a peer claims in Noise handshake message 2 or 3.

    Attributes:
        version: payload format version; this node speaks ``IDENTITY_PAYLOAD_VERSION``.
        identity_pubkey: the peer's Ed25519 identity public key.
        certificate: its encoded ``SignedCertificate``, or ``None`` before admission.
        static_sig: identity signature of ``STATIC_KEY_CONTEXT + noise_static_pub``.
        software_version: free text such as ``"0.1.0"``, 1..SOFTWARE_VERSION_CHARS_MAX.
        protocol_version: wire protocol version, 0..PROTOCOL_VERSION_MAX.
        signed_certificate: ``certificate`` decoded (``None`` when it is ``None``), so
            that judging it needs no second decode.  Not verified: pass it to
            ``crypto.certs.verify``.  Not part of the encoding.
    """

    version: int = IDENTITY_PAYLOAD_VERSION
    identity_pubkey: bytes
    certificate: bytes | None
    static_sig: bytes
    software_version: str
    protocol_version: int
    signed_certificate: SignedCertificate | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        error = BindingFormatError
        if self.version != IDENTITY_PAYLOAD_VERSION or isinstance(self.version, bool):
            raise error(
                f"identity payload version {self.version!r} unsupported"
                f" (speaks {IDENTITY_PAYLOAD_VERSION})"
            )
        require_bytes(
            self.identity_pubkey, "identity_pubkey", length=ED25519_KEY_BYTES, error=error
        )
        if self.certificate is not None:
            signed = _require_certificate(self.certificate, "identity payload certificate")
            object.__setattr__(self, "signed_certificate", signed)
        require_bytes(self.static_sig, "static_sig", length=ED25519_SIGNATURE_BYTES, error=error)
        require_str(
            self.software_version,
            "software_version",
            chars_min=1,
            chars_max=SOFTWARE_VERSION_CHARS_MAX,
            error=error,
        )
        require_int(
            self.protocol_version, "protocol_version", lo=0, hi=PROTOCOL_VERSION_MAX, error=error
        )

    def encode(self) -> bytes:
        return encode_record(self)

    @classmethod
    def decode(cls, data: bytes) -> IdentityPayload:
        """Strictly decode; checks no signature.  Raises ``BindingFormatError``."""
        error = BindingFormatError
        what = "identity payload"
        obj = unpack_map(data, bytes_max=IDENTITY_PAYLOAD_BYTES_MAX, what=what, error=error)
        return build_record(cls, obj, data, what=what, error=error)


def encode_identity_payload(
    id_key: nacl.signing.SigningKey,
    *,
    noise_static_pub: bytes,
    certificate: bytes | None,
    software_version: str,
    protocol_version: int,
) -> bytes:
    """The payload to send in handshake message 2 or 3, binding our Noise static key."""
    require_bytes(
        noise_static_pub, "noise_static_pub", length=NOISE_STATIC_KEY_BYTES, error=ValueError
    )
    payload = IdentityPayload(
        identity_pubkey=bytes(id_key.verify_key),
        certificate=certificate,
        static_sig=id_key.sign(STATIC_KEY_CONTEXT + noise_static_pub).signature,
        software_version=software_version,
        protocol_version=protocol_version,
    )
    return payload.encode()


def verify_identity_payload(payload_bytes: bytes, remote_noise_static: bytes) -> IdentityPayload:
    """Decode a peer's payload and check it binds ``remote_noise_static``.

    ``remote_noise_static`` must come from the Noise handshake state.  Raises
    ``BindingFormatError`` or ``StaticKeySignatureError``.
    """
    require_bytes(
        remote_noise_static, "remote_noise_static", length=NOISE_STATIC_KEY_BYTES, error=ValueError
    )
    payload = IdentityPayload.decode(payload_bytes)
    message = STATIC_KEY_CONTEXT + remote_noise_static
    if not ed25519_verify_cached(payload.identity_pubkey, message, payload.static_sig):
        raise StaticKeySignatureError(
            f"identity key {payload.identity_pubkey.hex()[:16]}… did not sign"
            " the Noise static key of this handshake"
        )
    return payload


def sign_handshake_hash(id_key: nacl.signing.SigningKey, handshake_hash: bytes) -> bytes:
    """Our challenge response: Sign(id_key, HANDSHAKE_CONTEXT + h), 64 bytes."""
    require_bytes(handshake_hash, "handshake_hash", length=HANDSHAKE_HASH_BYTES, error=ValueError)
    return id_key.sign(HANDSHAKE_CONTEXT + handshake_hash).signature


def verify_handshake_signature(
    identity_pubkey: bytes, handshake_hash: bytes, signature: bytes
) -> None:
    """Check the peer's challenge response; raises ``HandshakeSignatureError``."""
    require_bytes(identity_pubkey, "identity_pubkey", length=ED25519_KEY_BYTES, error=ValueError)
    require_bytes(handshake_hash, "handshake_hash", length=HANDSHAKE_HASH_BYTES, error=ValueError)
    require_bytes(
        signature,
        "handshake signature",
        length=ED25519_SIGNATURE_BYTES,
        error=HandshakeSignatureError,
    )
    if not ed25519_verify(identity_pubkey, HANDSHAKE_CONTEXT + handshake_hash, signature):
        raise HandshakeSignatureError(
            f"identity key {identity_pubkey.hex()[:16]}… did not sign this session's handshake hash"
        )


@dataclass(frozen=True, kw_only=True)
class JoinRequest:
    """A certificate-less node asks to be admitted.

    Attributes:
        token_proof: ``crypto.tokens.token_proof`` over this session's handshake hash.
        node_name: the name to certify, 1..NODE_NAME_CHARS_MAX printable characters.
    """

    MESSAGE_TYPE: ClassVar[AdmissionMessageType] = AdmissionMessageType.JOIN_REQUEST
    token_proof: bytes
    node_name: str

    def __post_init__(self) -> None:
        error = BindingFormatError
        require_bytes(self.token_proof, "token_proof", length=TOKEN_PROOF_BYTES, error=error)
        require_node_name(self.node_name, "join request node_name", error=error)

    def encode(self) -> bytes:
        return encode_record(self, type=int(self.MESSAGE_TYPE))


@dataclass(frozen=True, kw_only=True)
class AdmissionGrant:
    """An admin admits the joiner.

    Attributes:
        certificate: the joiner's encoded ``SignedCertificate``.
        ca_pubkey: the cluster CA key; the joiner checks it against its token.
        gossip_key: the cluster gossip key (secret, kept out of ``repr``).
    """

    MESSAGE_TYPE: ClassVar[AdmissionMessageType] = AdmissionMessageType.ADMISSION_GRANT
    certificate: bytes
    ca_pubkey: bytes
    gossip_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        error = BindingFormatError
        _require_certificate(self.certificate, "admission grant certificate")
        require_bytes(self.ca_pubkey, "ca_pubkey", length=ED25519_KEY_BYTES, error=error)
        require_bytes(self.gossip_key, "gossip_key", length=GOSSIP_KEY_BYTES, error=error)

    def encode(self) -> bytes:
        return encode_record(self, type=int(self.MESSAGE_TYPE))


@dataclass(frozen=True, kw_only=True)
class Refusal:
    """Admission or handshake refused.

    Attributes:
        reason_code: a ``RefusalReason``; unknown codes are malformed.
        message: for the operator, 0..REFUSAL_MESSAGE_CHARS_MAX printable characters.
    """

    MESSAGE_TYPE: ClassVar[AdmissionMessageType] = AdmissionMessageType.REFUSAL
    reason_code: RefusalReason
    message: str

    def __post_init__(self) -> None:
        error = BindingFormatError
        lo, hi = min(RefusalReason), max(RefusalReason)  # contiguous: append only
        code = require_int(self.reason_code, "refusal reason_code", lo=lo, hi=hi, error=error)
        object.__setattr__(self, "reason_code", RefusalReason(code))
        require_str(
            self.message, "refusal message", chars_max=REFUSAL_MESSAGE_CHARS_MAX, error=error
        )

    def encode(self) -> bytes:
        return encode_record(self, type=int(self.MESSAGE_TYPE))


@dataclass(frozen=True, kw_only=True)
class Auth:
    """The channel-bound challenge-response, the first message each side sends.

    Attributes:
        signature: ``sign_handshake_hash(id_key, h)`` for this session's ``h``.
    """

    MESSAGE_TYPE: ClassVar[AdmissionMessageType] = AdmissionMessageType.AUTH
    signature: bytes

    def __post_init__(self) -> None:
        require_bytes(
            self.signature,
            "auth signature",
            length=ED25519_SIGNATURE_BYTES,
            error=BindingFormatError,
        )

    def encode(self) -> bytes:
        return encode_record(self, type=int(self.MESSAGE_TYPE))


@dataclass(frozen=True, kw_only=True)
class Welcome:
    """The responder accepts a member's certificate; the session may be used.

    Attributes:
        node_name: the responder's certified name, for the initiator's logs.
    """

    MESSAGE_TYPE: ClassVar[AdmissionMessageType] = AdmissionMessageType.WELCOME
    node_name: str

    def __post_init__(self) -> None:
        require_node_name(self.node_name, "welcome node_name", error=BindingFormatError)

    def encode(self) -> bytes:
        return encode_record(self, type=int(self.MESSAGE_TYPE))


AdmissionMessage = JoinRequest | AdmissionGrant | Refusal | Auth | Welcome

_MESSAGE_CLASSES: dict[int, type[AdmissionMessage]] = {
    cls.MESSAGE_TYPE: cls for cls in (JoinRequest, AdmissionGrant, Refusal, Auth, Welcome)
}


def decode_admission_message(data: bytes) -> AdmissionMessage:
    """Strictly decode any admission message; raises ``BindingFormatError``."""
    error = BindingFormatError
    fields = unpack_map(
        data, bytes_max=ADMISSION_MESSAGE_BYTES_MAX, what="admission message", error=error
    )
    tag = fields.pop("type", None)
    cls = None
    if isinstance(tag, int) and not isinstance(tag, bool):
        cls = _MESSAGE_CLASSES.get(tag)
    if cls is None:
        raise error(f"admission message type {repr(tag)[:32]} is unknown")
    return build_record(cls, fields, data, what=cls.__name__, error=error)


_REFUSAL_BY_ERROR: tuple[tuple[type[Exception], RefusalReason], ...] = (
    (UnknownClusterError, RefusalReason.UNKNOWN_CLUSTER),
    (CertificateExpiredError, RefusalReason.CERTIFICATE_EXPIRED),
    (CertificateRevokedError, RefusalReason.CERTIFICATE_REVOKED),
    (BadSignatureError, RefusalReason.BAD_SIGNATURE),
    (BindingSignatureError, RefusalReason.BAD_SIGNATURE),
    (CertificateFormatError, RefusalReason.MALFORMED),
    (BindingFormatError, RefusalReason.MALFORMED),
    (TokenFormatError, RefusalReason.BAD_TOKEN),
    (UnknownTokenError, RefusalReason.BAD_TOKEN),
    (BadTokenProofError, RefusalReason.BAD_TOKEN),
    (TokenExpiredError, RefusalReason.TOKEN_EXPIRED),
    (TokenExhaustedError, RefusalReason.TOKEN_EXHAUSTED),
)


def refusal_reason_for(error: Exception) -> RefusalReason:
    """The reason to send a peer whose input raised ``error``.

    ``VERSION_MISMATCH`` and ``NOT_ADMITTED`` are policy decisions of the caller, not
    errors of these modules.  Raises ``ValueError`` for an error with no refusal reason.
    """
    for error_class, reason in _REFUSAL_BY_ERROR:
        if isinstance(error, error_class):
            return reason
    raise ValueError(f"no refusal reason for {type(error).__name__}") from error
