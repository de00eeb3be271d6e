"""Cluster CA and membership certificates.

Theory of operation
-------------------
The founding node creates the *cluster CA*, an Ed25519 key pair.  Two names derive from
its public key and never change:

* ``cluster_id``: lowercase base32 (RFC 4648, no padding) of the first 16 bytes of
  BLAKE2b-512(ca_pubkey), 26 characters (short enough for mDNS TXT records and logs);
* the CA *fingerprint*: lowercase base32 (no padding) of SHA-256(ca_pubkey), 52 characters.
  It sits inside every join token (:mod:`crypto.tokens`) so that a joiner can refuse a
  rogue responder before sending anything.  SHA-256 is what k3s pins in its tokens, and
  the full 256 bits leave nothing to grind for a collision.

A *membership certificate* binds a node's Ed25519 identity key to a name, roles, a serial
and a validity window in Unix seconds.  It is a canonical msgpack map (keys sorted, roles
sorted, shortest encodings: what ``msgpack.packb`` emits for a dict built in sorted order)
and the CA signs ``CERT_SIGNATURE_CONTEXT + cert_bytes``; the context keeps a certificate
signature from ever meaning anything else.  Decoders re-encode and compare, so one
certificate has exactly one byte string and its signature and hash are unambiguous.

``verify`` checks, in order: the certificate names this cluster, the CA signature holds,
the serial is not revoked, and ``not_before <= now < not_after``.  Time enters as ``now``;
this module never reads a clock.  ``issue`` backdates ``not_before`` by
``CERT_CLOCK_SKEW_S`` so a member whose clock runs a little behind accepts a fresh
certificate.

The CA private key is replicated to admins only, in a libsodium sealed box addressed to the
admin's Curve25519 key (``seal_ca_key`` / ``open_ca_key``).

The canonical-record helpers at the end (``pack_canonical``, ``unpack_map``,
``build_record``, ``require_*``) are shared with :mod:`crypto.binding` and
:mod:`crypto.tokens`; they are a concept of their own and should move to a
``crypto/canonical.py`` once other records (audit log) need them too.

Errors
------
::

    CertificateError                 a certificate cannot be accepted
    ├── CertificateFormatError       malformed, oversized, non-canonical, unknown version
    ├── UnknownClusterError          issued for another cluster (cluster_id / CA mismatch)
    ├── BadSignatureError            the CA signature does not verify
    ├── CertificateRevokedError      its serial is revoked
    └── CertificateExpiredError      now is outside not_before .. not_after
    CAKeyError                       a sealed CA key cannot be opened or is malformed

These report bad input.  Misusing the API (a TTL out of range, a key of the wrong length)
raises ``ValueError``.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar, Protocol, TypeVar, cast

import msgpack
import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.signing
import nacl.utils

CERT_VERSION = 1
CERT_BYTES_MAX = 4096
SIGNED_CERT_BYTES_MAX = CERT_BYTES_MAX + 128  # envelope: two keys, two bin headers, signature
CERT_SIGNATURE_CONTEXT = b"vramancer-membership-certificate:"
CERT_TTL_S_MAX = 5 * 365 * 24 * 3600
CERT_CLOCK_SKEW_S = 300  # backdating of not_before, as certificate issuers commonly do
ROLES = ("admin", "operator", "member")
NODE_NAME_CHARS_MAX = 64  # Linux HOST_NAME_MAX
CLUSTER_ID_DIGEST_BYTES = 16
CLUSTER_ID_CHARS = 26  # base32 of 16 bytes, unpadded
FINGERPRINT_CHARS = 52  # base32 of 32 bytes, unpadded
ED25519_KEY_BYTES = 32
ED25519_SIGNATURE_BYTES = 64
SERIAL_MAX = 2**64 - 1  # msgpack uint64
TIMESTAMP_S_MAX = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second ISO 8601 can print
CA_KEY_SEAL_CONTEXT = b"vramancer-cluster-ca-key/1:"
SEALED_CA_KEY_BYTES = nacl.bindings.crypto_box_SEALBYTES + len(CA_KEY_SEAL_CONTEXT) + 32
BASE32_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"

RandomSource = bytes | Callable[[int], bytes]


class CertificateError(Exception):
    """A certificate cannot be accepted; the message says which one and why."""


class CertificateFormatError(CertificateError):
    """Malformed, oversized or non-canonical bytes, or field values out of range."""


class UnknownClusterError(CertificateError):
    """The certificate was issued for another cluster than the CA key given."""


class BadSignatureError(CertificateError):
    """The CA signature over the certificate does not verify."""


class CertificateRevokedError(CertificateError):
    """The certificate's serial is in the revocation set."""


class CertificateExpiredError(CertificateError):
    """``now`` is before ``not_before`` or at/after ``not_after``."""


class CAKeyError(Exception):
    """A sealed CA key cannot be opened, is malformed, or belongs to another CA."""


def base32_lower(data: bytes) -> str:
    """Lowercase RFC 4648 base32 without padding."""
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def cluster_id_of(ca_pubkey: bytes) -> str:
    """``cluster_id``: base32 of the first 16 bytes of BLAKE2b-512(ca_pubkey)."""
    return base32_lower(hashlib.blake2b(ca_pubkey).digest()[:CLUSTER_ID_DIGEST_BYTES])


def ca_fingerprint(ca_pubkey: bytes) -> str:
    """CA fingerprint pinned by join tokens: base32 of SHA-256(ca_pubkey), 52 chars."""
    return base32_lower(hashlib.sha256(ca_pubkey).digest())


def draw_random(source: RandomSource | None, count: int) -> bytes:
    """``count`` random bytes: from libsodium by default, else from ``source``.

    ``source`` is either exactly ``count`` bytes or a callable like ``nacl.utils.random``;
    tests inject one to be deterministic.
    """
    drawn = nacl.utils.random(count) if source is None else source
    if callable(drawn):
        drawn = drawn(count)
    if not isinstance(drawn, bytes) or len(drawn) != count:
        raise ValueError(f"random source must give exactly {count} bytes")
    return drawn


def format_utc(timestamp_s: float) -> str:
    """ISO 8601 UTC, e.g. ``2026-11-21T10:00:00Z``; formats a given time, reads no clock."""
    if not 0 <= timestamp_s <= TIMESTAMP_S_MAX:
        return f"@{timestamp_s}"
    moment = datetime.fromtimestamp(math.floor(timestamp_s), tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def ed25519_verify(pubkey: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``pubkey``'s Ed25519 signature of ``message``."""
    try:
        nacl.signing.VerifyKey(pubkey).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        return False
    return True


@functools.lru_cache(maxsize=1024)
def ed25519_verify_cached(pubkey: bytes, message: bytes, signature: bytes) -> bool:
    """``ed25519_verify``, remembering the answer for the exact same three byte strings.

    Verification is a pure function of its inputs, so this checks exactly what
    ``ed25519_verify`` checks.  For signatures that recur from handshake to handshake
    (the CA's over a peer's certificate, a peer's identity key's over its per-process
    Noise static key); never for a per-session one such as the handshake hash's.
    """
    return ed25519_verify(pubkey, message, signature)


@dataclass(frozen=True, kw_only=True)
class ClusterCA:
    """The cluster certificate authority.

    Attributes:
        signing_key: the CA's Ed25519 private key; only admins hold it (``seal_ca_key``).
    """

    signing_key: nacl.signing.SigningKey = field(repr=False)

    @classmethod
    def generate(cls, rng_bytes: RandomSource | None = None) -> ClusterCA:
        """A new CA; ``rng_bytes`` (32 bytes or a callable) makes it deterministic."""
        return cls(signing_key=nacl.signing.SigningKey(draw_random(rng_bytes, 32)))

    @property
    def pubkey(self) -> bytes:
        """The CA public key (32 bytes)."""
        return bytes(self.signing_key.verify_key)

    @property
    def cluster_id(self) -> str:
        return cluster_id_of(self.pubkey)

    @property
    def fingerprint(self) -> str:
        return ca_fingerprint(self.pubkey)

    def sign(self, cert_bytes: bytes) -> bytes:
        """The CA signature of an encoded certificate (64 bytes)."""
        return self.signing_key.sign(CERT_SIGNATURE_CONTEXT + cert_bytes).signature


@dataclass(frozen=True, kw_only=True)
class MembershipCertificate:
    """What the CA asserts about one member.  Construction validates every field.

    Attributes:
        version: certificate format version; this node speaks ``CERT_VERSION``.
        cluster_id: ``cluster_id_of`` the issuing CA's public key.
        node_pubkey: the member's Ed25519 identity public key (32 bytes).
        node_name: human name, 1..NODE_NAME_CHARS_MAX printable characters.
        roles: non-empty subset of ``ROLES``; kept sorted so that equal sets compare equal.
        serial: unique per cluster, 0..SERIAL_MAX; revocation names serials.
        not_before: first valid Unix second (inclusive).
        not_after: first invalid Unix second (exclusive); greater than ``not_before``.
    """

    version: int = CERT_VERSION
    cluster_id: str
    node_pubkey: bytes
    node_name: str
    roles: tuple[str, ...]
    serial: int
    not_before: int
    not_after: int

    def __post_init__(self) -> None:
        error = CertificateFormatError
        if self.version != CERT_VERSION or isinstance(self.version, bool):
            raise error(f"certificate version {self.version!r} unsupported (speaks {CERT_VERSION})")
        if not is_base32_text(self.cluster_id, CLUSTER_ID_CHARS):
            raise error(f"certificate cluster_id must be {CLUSTER_ID_CHARS} base32 characters")
        require_bytes(
            self.node_pubkey, "certificate node_pubkey", length=ED25519_KEY_BYTES, error=error
        )
        require_node_name(self.node_name, "certificate node_name", error=error)
        object.__setattr__(self, "roles", normalise_roles(self.roles, "certificate roles", error))
        require_int(self.serial, "certificate serial", lo=0, hi=SERIAL_MAX, error=error)
        for name in ("not_before", "not_after"):
            require_int(
                getattr(self, name), f"certificate {name}", lo=0, hi=TIMESTAMP_S_MAX, error=error
            )
        if self.not_before >= self.not_after:
            raise error(f"certificate serial {self.serial} has not_before >= not_after")

    def encode(self) -> bytes:
        """The canonical msgpack encoding, the bytes the CA signs."""
        return encode_record(self)

    @classmethod
    def decode(cls, data: bytes) -> MembershipCertificate:
        """Strictly decode; raises ``CertificateFormatError``.  Checks no signature."""
        obj = unpack_map(
            data, bytes_max=CERT_BYTES_MAX, what="certificate", error=CertificateFormatError
        )
        return build_record(cls, obj, data, what="certificate", error=CertificateFormatError)


@dataclass(frozen=True, kw_only=True)
class SignedCertificate:
    """A certificate's bytes and the CA signature over them.

    Attributes:
        cert: canonical encoding of a ``MembershipCertificate`` (at most CERT_BYTES_MAX).
        signature: Ed25519 signature of ``CERT_SIGNATURE_CONTEXT + cert`` by the CA.
        unverified_certificate: ``cert`` decoded.  Nothing about it is trusted until
            ``verify`` has returned it.
    """

    cert: bytes
    signature: bytes
    unverified_certificate: MembershipCertificate = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        error = CertificateFormatError
        require_bytes(self.cert, "certificate bytes", bytes_max=CERT_BYTES_MAX, error=error)
        require_bytes(
            self.signature, "certificate signature", length=ED25519_SIGNATURE_BYTES, error=error
        )
        object.__setattr__(self, "unverified_certificate", MembershipCertificate.decode(self.cert))

    def encode(self) -> bytes:
        """Canonical msgpack ``{cert, signature}``; what handshakes and grants carry."""
        return encode_record(self)

    @classmethod
    def decode(cls, data: bytes) -> SignedCertificate:
        """Strictly decode envelope and certificate; raises ``CertificateFormatError``."""
        error = CertificateFormatError
        what = "signed certificate"
        obj = unpack_map(data, bytes_max=SIGNED_CERT_BYTES_MAX, what=what, error=error)
        return build_record(cls, obj, data, what=what, error=error)


def issue(
    ca: ClusterCA,
    *,
    node_pubkey: bytes,
    node_name: str,
    roles: Collection[str],
    serial: int,
    now: float,
    ttl_s: int,
) -> SignedCertificate:
    """Certify ``node_pubkey`` from ``now - CERT_CLOCK_SKEW_S`` to ``now + ttl_s``.

    Raises ``ValueError`` for a TTL outside 1..CERT_TTL_S_MAX and
    ``CertificateFormatError`` when the fields do not make a valid certificate.
    """
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not 1 <= ttl_s <= CERT_TTL_S_MAX:
        raise ValueError(f"ttl_s must be an integer in 1..{CERT_TTL_S_MAX}, got {ttl_s!r}")
    start_s = math.floor(now)
    cert = MembershipCertificate(
        cluster_id=ca.cluster_id,
        node_pubkey=node_pubkey,
        node_name=node_name,
        roles=tuple(roles),
        serial=serial,
        not_before=max(0, start_s - CERT_CLOCK_SKEW_S),
        not_after=start_s + ttl_s,
    )
    cert_bytes = cert.encode()
    return SignedCertificate(cert=cert_bytes, signature=ca.sign(cert_bytes))


def verify(
    signed: SignedCertificate, ca_pubkey: bytes, *, now: float, revoked_serials: Collection[int]
) -> MembershipCertificate:
    """Return the certificate if this cluster's CA issued it and it is valid at ``now``.

    Raises, checked in this order: ``UnknownClusterError``, ``BadSignatureError``,
    ``CertificateRevokedError``, ``CertificateExpiredError``.
    """
    require_bytes(ca_pubkey, "ca_pubkey", length=ED25519_KEY_BYTES, error=ValueError)
    cert = signed.unverified_certificate
    label = f"certificate serial {cert.serial} ({cert.node_name!r})"
    expected = cluster_id_of(ca_pubkey)
    if cert.cluster_id != expected:
        raise UnknownClusterError(f"{label} is for cluster {cert.cluster_id}, not {expected}")
    if not ed25519_verify_cached(ca_pubkey, CERT_SIGNATURE_CONTEXT + signed.cert, signed.signature):
        raise BadSignatureError(
            f"{label}: signature does not verify with cluster {expected}'s CA key"
        )
    if cert.serial in revoked_serials:
        raise CertificateRevokedError(f"{label} is revoked")
    if now < cert.not_before:
        raise CertificateExpiredError(
            f"{label} is not valid before {format_utc(cert.not_before)} (now {format_utc(now)})"
        )
    if now >= cert.not_after:
        raise CertificateExpiredError(
            f"{label} expired at {format_utc(cert.not_after)} (now {format_utc(now)})"
        )
    return cert


def seal_ca_key(ca: ClusterCA, recipient_curve25519_pub: bytes) -> bytes:
    """The CA private key sealed to an admin's Curve25519 public key.

    An Ed25519 identity key converts with ``VerifyKey.to_curve25519_public_key()``.
    The sealed box is anonymous and randomised by libsodium (not injectable).
    """
    require_bytes(recipient_curve25519_pub, "recipient key", length=32, error=ValueError)
    box = nacl.public.SealedBox(nacl.public.PublicKey(recipient_curve25519_pub))
    return box.encrypt(CA_KEY_SEAL_CONTEXT + bytes(ca.signing_key))


def open_ca_key(
    sealed: bytes, recipient_curve25519_private: bytes, *, expected_ca_pubkey: bytes | None = None
) -> ClusterCA:
    """Open ``seal_ca_key``'s output; raises ``CAKeyError`` if it cannot be trusted."""
    require_bytes(recipient_curve25519_private, "recipient key", length=32, error=ValueError)
    require_bytes(sealed, "sealed CA key", length=SEALED_CA_KEY_BYTES, error=CAKeyError)
    box = nacl.public.SealedBox(nacl.public.PrivateKey(recipient_curve25519_private))
    try:
        plain = box.decrypt(sealed)
    except nacl.exceptions.CryptoError as exc:
        raise CAKeyError("sealed CA key does not open with this recipient key") from exc
    if not plain.startswith(CA_KEY_SEAL_CONTEXT):
        raise CAKeyError("sealed box does not hold a VRAMancer cluster CA key")
    ca = ClusterCA(signing_key=nacl.signing.SigningKey(plain[len(CA_KEY_SEAL_CONTEXT) :]))
    if expected_ca_pubkey is not None and ca.pubkey != expected_ca_pubkey:
        raise CAKeyError(f"sealed CA key is for cluster {ca.cluster_id}, not the expected one")
    return ca


# --- canonical records (shared with crypto.binding) --------------------------------------


class CanonicalRecord(Protocol):
    __dataclass_fields__: ClassVar[dict[str, Any]]

    def encode(self) -> bytes: ...


R = TypeVar("R", bound=CanonicalRecord)


def pack_canonical(fields: Mapping[str, object]) -> bytes:
    """msgpack of a map with keys sorted; values must hold no maps."""
    return cast(bytes, msgpack.packb(dict(sorted(fields.items())), use_bin_type=True))


@functools.cache
def _init_field_names(cls: type) -> tuple[str, ...]:
    """The names of a dataclass's init fields, in declaration order (computed once)."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.init)


def encode_record(record: CanonicalRecord, **extra: object) -> bytes:
    """Canonical encoding of a dataclass's init fields, plus ``extra`` keys."""
    values = {name: getattr(record, name) for name in _init_field_names(type(record))}
    return pack_canonical({**values, **extra})


def unpack_map(
    data: bytes, *, bytes_max: int, what: str, error: type[Exception]
) -> dict[object, object]:
    """Decode bounded msgpack that must be one map; any failure raises ``error``."""
    if not isinstance(data, bytes):
        raise error(f"{what} must be bytes, got {type(data).__name__}")
    if len(data) > bytes_max:
        raise error(f"{what} is {len(data)} bytes, over the {bytes_max}-byte limit")
    try:
        obj: object = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
        raise error(f"{what} is not valid msgpack: {exc}") from exc
    if not isinstance(obj, dict):
        raise error(f"{what} must be a msgpack map, got {type(obj).__name__}")
    return obj


def build_record(
    cls: type[R], obj: Mapping[object, object], data: bytes, *, what: str, error: type[Exception]
) -> R:
    """Construct ``cls`` from exactly its init fields, then insist ``data`` was canonical."""
    names = set(_init_field_names(cls))
    unknown = sorted(repr(key) for key in obj if key not in names)
    if unknown:
        raise error(f"{what} has unknown fields {', '.join(unknown[:5])}")
    missing = sorted(names - set(obj))
    if missing:
        raise error(f"{what} lacks fields {', '.join(missing)}")
    values = {str(k): tuple(v) if isinstance(v, list) else v for k, v in obj.items()}
    record = cast(Callable[..., R], cls)(**values)
    if record.encode() != data:
        raise error(f"{what} is not canonically encoded (sorted keys and roles, shortest forms)")
    return record


def require_int(value: object, name: str, *, lo: int, hi: int, error: type[Exception]) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{name} must be an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise error(f"{name} is {value}, outside {lo}..{hi}")
    return value


def require_bytes(
    value: object,
    name: str,
    *,
    length: int | None = None,
    bytes_max: int | None = None,
    error: type[Exception],
) -> bytes:
    if not isinstance(value, bytes):
        raise error(f"{name} must be bytes, got {type(value).__name__}")
    if length is not None and len(value) != length:
        raise error(f"{name} must be {length} bytes, got {len(value)}")
    if bytes_max is not None and len(value) > bytes_max:
        raise error(f"{name} is {len(value)} bytes, over the {bytes_max}-byte limit")
    return value


def require_str(
    value: object, name: str, *, chars_min: int = 0, chars_max: int, error: type[Exception]
) -> str:
    """A printable string of ``chars_min..chars_max`` characters."""
    if not isinstance(value, str):
        raise error(f"{name} must be a string, got {type(value).__name__}")
    if not chars_min <= len(value) <= chars_max:
        raise error(f"{name} has {len(value)} characters, allowed {chars_min}..{chars_max}")
    if not value.isprintable():
        raise error(f"{name} contains non-printable characters")
    return value


def require_node_name(value: object, name: str, *, error: type[Exception]) -> str:
    return require_str(value, name, chars_min=1, chars_max=NODE_NAME_CHARS_MAX, error=error)


def normalise_roles(roles: object, name: str, error: type[Exception]) -> tuple[str, ...]:
    """A non-empty, duplicate-free subset of ``ROLES`` as a sorted tuple."""
    if not isinstance(roles, tuple) or not all(isinstance(role, str) for role in roles):
        raise error(f"{name} must be a tuple of strings")
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise error(f"{name} has unknown roles {unknown!r}; known roles are {ROLES!r}")
    if not roles or len(set(roles)) != len(roles):
        raise error(f"{name} must be non-empty without duplicates, got {roles!r}")
    return tuple(sorted(roles))


def is_base32_text(value: object, chars: int) -> bool:
    """Whether ``value`` is ``chars`` characters of lowercase unpadded base32."""
    return isinstance(value, str) and len(value) == chars and set(value) <= set(BASE32_ALPHABET)
