"""Join tokens: how a new device proves an admin invited it.

Theory of operation
-------------------
A token is the one secret an operator copies from an admin to a new device::

    vrm1.<CA fingerprint, 52 base32 chars>.<secret, 52 base32 chars>

(anchor: k3s secure tokens, ``K10<sha256 of the CA>::<secret>``).  All base32 here is
lowercase RFC 4648 without padding.

* The CA fingerprint (:func:`crypto.certs.ca_fingerprint`) lets the joiner refuse a rogue
  responder before it sends anything: ``ca_matches(token, responder_ca_pubkey)``.
* The 32-byte secret never crosses the wire.  After the Noise handshake the joiner sends a
  proof bound to that session's handshake hash ``h``::

      proof = token_id (8 bytes) || HMAC-SHA256(key=SHA-256(secret),
                                                msg=TOKEN_PROOF_CONTEXT + h)

  ``h`` is unique per session and both sides contributed an ephemeral key, so a proof
  replayed in, or relayed into, another session does not verify.

Storage and its trade-off
-------------------------
The registry stores a :class:`TokenRecord` per token, never the secret: ``secret_hash =
SHA-256(secret)`` and ``token_id`` = hex of the first 8 bytes of SHA-256(TOKEN_ID_CONTEXT
|| secret_hash) (safe to log and show).  The HMAC key is SHA-256(secret) rather than the
secret *because the registry must recompute the HMAC from what it stores*.  The stored
hash is therefore a secret equivalent for proving knowledge of a token: whoever reads the
persisted registry can forge proofs for the tokens in it until they expire or run out of
uses.  Hashing still keeps the pasteable token text out of the file, and nothing more.  So
the registry file must be written with mode 0600 by its owner (the shell; this module does
no I/O), and tokens are short-lived (``TOKEN_TTL_S_MAX``) and count-limited.  Removing the
equivalence would take a PAKE or a per-token signing key, which this design does not need.

``token_id`` is derived from the HMAC key under its own label, so showing it reveals
nothing usable about the key.

``redeem`` checks, in order: proof format, ``token_id`` known, HMAC (constant time),
expiry, uses left.  The HMAC comes before expiry and uses so that someone without the
secret learns nothing about a token's state.

Errors
------
::

    TokenError
    ├── TokenFormatError        token text or proof malformed (prefix, version, base32, length)
    ├── UnknownTokenError       no token with this id (never issued, revoked or pruned)
    ├── BadTokenProofError      the HMAC does not match this secret and handshake
    ├── TokenExpiredError       now is at or past the token's expiry
    ├── TokenExhaustedError     no uses left
    ├── TokenRegistryFullError  TOKENS_MAX live tokens already
    └── TokenStoreError         an exported registry or a record is malformed
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from crypto.certs import (
    FINGERPRINT_CHARS,
    RandomSource,
    base32_lower,
    ca_fingerprint,
    draw_random,
    format_utc,
    is_base32_text,
    normalise_roles,
    require_bytes,
    require_int,
)

TOKEN_PREFIX = "vrm1"
TOKEN_SEPARATOR = "."
TOKEN_SECRET_BYTES = 32
TOKEN_SECRET_CHARS = 52  # base32 of 32 bytes, unpadded
TOKEN_TEXT_CHARS = len(TOKEN_PREFIX) + 1 + FINGERPRINT_CHARS + 1 + TOKEN_SECRET_CHARS
TOKEN_ID_BYTES = 8
TOKEN_HMAC_BYTES = 32
TOKEN_PROOF_BYTES = TOKEN_ID_BYTES + TOKEN_HMAC_BYTES
TOKEN_PROOF_CONTEXT = b"vramancer-join-token:"
TOKEN_ID_CONTEXT = b"vramancer-join-token-id:"
HANDSHAKE_HASH_BYTES = 32  # Noise_XX_25519_ChaChaPoly_SHA256: h is a SHA-256 digest
TOKEN_TTL_S_DEFAULT = 24 * 3600  # k3s bootstrap tokens default to 24 h as well
TOKEN_TTL_S_MAX = 30 * 24 * 3600
TOKEN_USES_MAX = 10_000
TOKENS_MAX = 1024
TIME_S_MAX = 2**63 - 1
REGISTRY_EXPORT_VERSION = 1


class TokenError(Exception):
    """A join token or proof cannot be accepted; the message says why."""


class TokenFormatError(TokenError):
    """Token text or proof bytes are malformed."""


class UnknownTokenError(TokenError):
    """No token with this id: never issued, revoked, or pruned."""


class BadTokenProofError(TokenError):
    """The proof's HMAC does not match the token secret and this handshake."""


class TokenExpiredError(TokenError):
    """The token's lifetime is over."""


class TokenExhaustedError(TokenError):
    """The token has no uses left."""


class TokenRegistryFullError(TokenError):
    """``TOKENS_MAX`` live tokens exist; revoke or wait for some to expire."""


class TokenStoreError(TokenError):
    """Exported registry data or a token record is malformed."""


class ParsedToken(NamedTuple):
    """The two parts of a token text."""

    ca_fingerprint: str
    secret: bytes


def format_token(fingerprint: str, secret: bytes) -> str:
    """``vrm1.<fingerprint>.<secret>``."""
    require_bytes(secret, "token secret", length=TOKEN_SECRET_BYTES, error=ValueError)
    if not is_base32_text(fingerprint, FINGERPRINT_CHARS):
        raise ValueError(f"CA fingerprint must be {FINGERPRINT_CHARS} base32 characters")
    return TOKEN_SEPARATOR.join((TOKEN_PREFIX, fingerprint, base32_lower(secret)))


def parse_token(text: str) -> ParsedToken:
    """Split and check a token text; surrounding whitespace is ignored.

    Raises ``TokenFormatError`` saying which part is wrong.
    """
    if not isinstance(text, str):
        raise TokenFormatError(f"token must be text, got {type(text).__name__}")
    text = text.strip()
    parts = text.split(TOKEN_SEPARATOR)
    if len(parts) != 3:
        raise TokenFormatError(f"token must have 3 dot-separated parts, got {len(parts)}")
    prefix, fingerprint, secret_text = parts
    if prefix != TOKEN_PREFIX:
        raise TokenFormatError(
            f"token must start with {TOKEN_PREFIX!r}; {prefix[:8]!r} is another format or version"
        )
    if _b32_decode(fingerprint, 32) is None:
        raise TokenFormatError(
            f"token CA fingerprint must be {FINGERPRINT_CHARS} lowercase base32 characters"
        )
    secret = _b32_decode(secret_text, TOKEN_SECRET_BYTES)
    if secret is None:
        raise TokenFormatError(
            f"token secret must be {TOKEN_SECRET_CHARS} lowercase base32 characters"
        )
    return ParsedToken(ca_fingerprint=fingerprint, secret=secret)


def _b32_decode(text: str, count: int) -> bytes | None:
    """Strict lowercase unpadded base32 of exactly ``count`` bytes, else ``None``."""
    if not is_base32_text(text, math.ceil(count * 8 / 5)):
        return None
    padded = text.upper() + "=" * (-len(text) % 8)
    try:
        data = base64.b32decode(padded)
    except binascii.Error:
        return None
    # Unused trailing bits must be zero, or two texts would name the same bytes.
    return data if base32_lower(data) == text else None


def _as_parsed(token: str | ParsedToken) -> ParsedToken:
    return token if isinstance(token, ParsedToken) else parse_token(token)


def ca_matches(token: str | ParsedToken, ca_pubkey: bytes) -> bool:
    """Whether the responder's CA key is the one the token pins."""
    expected = _as_parsed(token).ca_fingerprint.encode("ascii")
    return hmac.compare_digest(expected, ca_fingerprint(ca_pubkey).encode("ascii"))


def secret_hash_of(secret: bytes) -> bytes:
    """SHA-256(secret): what the registry stores and the HMAC key of proofs."""
    return hashlib.sha256(secret).digest()


def token_id_of(secret_hash: bytes) -> str:
    """Hex of 8 bytes of a domain-separated hash of ``secret_hash``; safe to log and show.

    Derived with its own label rather than cut from ``secret_hash`` so that showing it
    reveals nothing about the HMAC key.
    """
    return hashlib.sha256(TOKEN_ID_CONTEXT + secret_hash).digest()[:TOKEN_ID_BYTES].hex()


def _proof_mac(secret_hash: bytes, handshake_hash: bytes) -> bytes:
    require_bytes(handshake_hash, "handshake hash", length=HANDSHAKE_HASH_BYTES, error=ValueError)
    return hmac.digest(secret_hash, TOKEN_PROOF_CONTEXT + handshake_hash, "sha256")


def token_proof(token: str | ParsedToken, handshake_hash: bytes) -> bytes:
    """The joiner's channel-bound proof that it knows the token secret (40 bytes)."""
    secret_hash = secret_hash_of(_as_parsed(token).secret)
    return bytes.fromhex(token_id_of(secret_hash)) + _proof_mac(secret_hash, handshake_hash)


@dataclass(frozen=True, kw_only=True)
class TokenRecord:
    """What the registry keeps about one token.  Construction validates every field.

    Attributes:
        token_id: 16 hex characters derived from ``secret_hash`` (see ``token_id_of``).
        secret_hash: SHA-256 of the secret; secret-equivalent, so kept out of ``repr``.
        created_at: Unix second the token was made.
        expires_at: first Unix second the token is refused; greater than ``created_at``.
        uses_left: admissions still allowed, 0..TOKEN_USES_MAX.
        roles: sorted, non-empty subset of ``crypto.certs.ROLES`` granted on admission.
    """

    token_id: str
    secret_hash: bytes = field(repr=False)
    created_at: int
    expires_at: int
    uses_left: int
    roles: tuple[str, ...]

    def __post_init__(self) -> None:
        error = TokenStoreError
        require_bytes(self.secret_hash, "token secret_hash", length=32, error=error)
        if self.token_id != token_id_of(self.secret_hash):
            raise error(f"token id {self.token_id!r} does not match its secret hash")
        require_int(self.created_at, "token created_at", lo=0, hi=TIME_S_MAX, error=error)
        require_int(self.expires_at, "token expires_at", lo=0, hi=TIME_S_MAX, error=error)
        if self.expires_at <= self.created_at:
            raise error(f"token {self.token_id} expires before it is created")
        require_int(self.uses_left, "token uses_left", lo=0, hi=TOKEN_USES_MAX, error=error)
        object.__setattr__(self, "roles", normalise_roles(self.roles, "token roles", error))

    def is_live(self, now: float) -> bool:
        """Unexpired with uses left."""
        return now < self.expires_at and self.uses_left > 0

    def to_plain(self) -> dict[str, object]:
        """JSON- and msgpack-friendly form (``secret_hash`` as hex)."""
        return {
            "token_id": self.token_id,
            "secret_hash": self.secret_hash.hex(),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "uses_left": self.uses_left,
            "roles": list(self.roles),
        }

    @classmethod
    def from_plain(cls, data: object) -> TokenRecord:
        """Inverse of ``to_plain``; raises ``TokenStoreError``."""
        names = {"token_id", "secret_hash", "created_at", "expires_at", "uses_left", "roles"}
        if not isinstance(data, Mapping) or set(data) != names:
            raise TokenStoreError(f"token record must be a map with exactly {sorted(names)}")
        secret_hex, roles = data["secret_hash"], data["roles"]
        if not isinstance(secret_hex, str) or not isinstance(roles, list | tuple):
            raise TokenStoreError("token record secret_hash must be hex text, roles a list")
        try:
            secret_hash = bytes.fromhex(secret_hex)
        except ValueError as exc:
            raise TokenStoreError("token record secret_hash is not hex") from exc
        return cls(**{**data, "secret_hash": secret_hash, "roles": tuple(roles)})


class TokenRegistry:
    """The admin side: the live tokens of one cluster CA.  Pure; persist via ``export``.

    At most ``TOKENS_MAX`` records; ``create`` prunes dead ones before refusing.
    """

    def __init__(self, *, ca_fingerprint: str, records: Iterable[TokenRecord] = ()) -> None:
        if not is_base32_text(ca_fingerprint, FINGERPRINT_CHARS):
            raise ValueError(f"CA fingerprint must be {FINGERPRINT_CHARS} base32 characters")
        self._ca_fingerprint = ca_fingerprint
        self._records: dict[str, TokenRecord] = {}
        for record in records:
            if record.token_id in self._records:
                raise ValueError(f"duplicate token id {record.token_id}")
            self._records[record.token_id] = record
        if len(self._records) > TOKENS_MAX:
            raise ValueError(f"{len(self._records)} tokens, more than TOKENS_MAX={TOKENS_MAX}")

    @property
    def ca_fingerprint(self) -> str:
        return self._ca_fingerprint

    def __len__(self) -> int:
        return len(self._records)

    def records(self) -> tuple[TokenRecord, ...]:
        """All records, oldest first."""
        return tuple(sorted(self._records.values(), key=lambda r: (r.created_at, r.token_id)))

    def get(self, token_id: str) -> TokenRecord | None:
        return self._records.get(token_id)

    def create(
        self,
        *,
        now: float,
        ttl_s: int = TOKEN_TTL_S_DEFAULT,
        uses: int,
        roles: Collection[str],
        rng_bytes: RandomSource | None = None,
    ) -> tuple[str, TokenRecord]:
        """Make a token; returns its text (show once, never store) and its record."""
        require_int(ttl_s, "ttl_s", lo=1, hi=TOKEN_TTL_S_MAX, error=ValueError)
        require_int(uses, "uses", lo=1, hi=TOKEN_USES_MAX, error=ValueError)
        granted = normalise_roles(tuple(roles), "roles", ValueError)
        if len(self._records) >= TOKENS_MAX:
            self.prune(now)
        if len(self._records) >= TOKENS_MAX:
            raise TokenRegistryFullError(f"{TOKENS_MAX} live tokens; revoke some first")
        secret = draw_random(rng_bytes, TOKEN_SECRET_BYTES)
        secret_hash = secret_hash_of(secret)
        created_at = math.floor(now)
        record = TokenRecord(
            token_id=token_id_of(secret_hash),
            secret_hash=secret_hash,
            created_at=created_at,
            expires_at=created_at + ttl_s,
            uses_left=uses,
            roles=granted,
        )
        if record.token_id in self._records:
            raise ValueError(f"token id {record.token_id} exists; the random source repeats")
        self._records[record.token_id] = record
        return format_token(self._ca_fingerprint, secret), record

    def redeem(self, proof: bytes, handshake_hash: bytes, now: float) -> TokenRecord:
        """Accept a joiner's proof, spend one use, return the updated record."""
        if not isinstance(proof, bytes) or len(proof) != TOKEN_PROOF_BYTES:
            raise TokenFormatError(f"token proof must be {TOKEN_PROOF_BYTES} bytes")
        token_id = proof[:TOKEN_ID_BYTES].hex()
        record = self._records.get(token_id)
        if record is None:
            raise UnknownTokenError(f"no token {token_id} (never issued, revoked or pruned)")
        expected = _proof_mac(record.secret_hash, handshake_hash)
        if not hmac.compare_digest(expected, proof[TOKEN_ID_BYTES:]):
            raise BadTokenProofError(
                f"token {token_id}: proof does not match the secret and this handshake"
            )
        if now >= record.expires_at:
            raise TokenExpiredError(
                f"token {token_id} expired at {format_utc(record.expires_at)}"
                f" (now {format_utc(now)})"
            )
        if record.uses_left <= 0:
            raise TokenExhaustedError(f"token {token_id} has no uses left")
        spent = replace(record, uses_left=record.uses_left - 1)
        self._records[token_id] = spent
        return spent

    def refund(self, token_id: str) -> TokenRecord | None:
        """Give back the use :meth:`redeem` spent, when the admission it paid for did not
        happen after all; ``None`` if the token is gone meanwhile (revoked or pruned)."""
        record = self._records.get(token_id)
        if record is None:
            return None
        refunded = replace(record, uses_left=min(record.uses_left + 1, TOKEN_USES_MAX))
        self._records[token_id] = refunded
        return refunded

    def revoke(self, token_id: str) -> TokenRecord:
        """Forget a token now; raises ``UnknownTokenError`` if there is none."""
        record = self._records.pop(token_id, None)
        if record is None:
            raise UnknownTokenError(f"no token {token_id!r} to revoke")
        return record

    def prune(self, now: float) -> tuple[TokenRecord, ...]:
        """Drop expired and used-up tokens; returns them, oldest first."""
        dead = tuple(r for r in self.records() if not r.is_live(now))
        for record in dead:
            del self._records[record.token_id]
        return dead

    def export(self) -> dict[str, object]:
        """Plain data (JSON- and msgpack-friendly) for persistence; write it 0600."""
        return {
            "version": REGISTRY_EXPORT_VERSION,
            "ca_fingerprint": self._ca_fingerprint,
            "tokens": [record.to_plain() for record in self.records()],
        }

    @classmethod
    def from_export(cls, data: object) -> TokenRegistry:
        """Inverse of ``export``; raises ``TokenStoreError`` on anything malformed."""
        if not isinstance(data, Mapping) or set(data) != {"version", "ca_fingerprint", "tokens"}:
            raise TokenStoreError("token registry must be a map {version, ca_fingerprint, tokens}")
        version = data["version"]
        if isinstance(version, bool) or version != REGISTRY_EXPORT_VERSION:
            raise TokenStoreError(
                f"token registry version {version!r} unsupported (speaks {REGISTRY_EXPORT_VERSION})"
            )
        tokens = data["tokens"]
        if not isinstance(tokens, list | tuple) or len(tokens) > TOKENS_MAX:
            raise TokenStoreError(f"token registry tokens must be a list of <= {TOKENS_MAX}")
        records = [TokenRecord.from_plain(item) for item in tokens]
        try:
            return cls(ca_fingerprint=data["ca_fingerprint"], records=records)
        except ValueError as exc:
            raise TokenStoreError(f"token registry is inconsistent: {exc}") from exc
