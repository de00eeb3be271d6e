"""Timestamped Ed25519 witness cosignatures, C2SP tlog-cosignature ``cosignature/v1``.

Theory of operation
-------------------
A cosignature is a note signature line added to a checkpoint by a *cosigner* (a
witness) to state: "as of this time, this is the largest tree head of this log I have
seen, and I checked it is consistent with every earlier one I cosigned".  For Ed25519
(https://c2sp.org/tlog-cosignature):

* the key id uses signature type byte 0x04:
  ``SHA-256(name || 0x0A || 0x04 || public key)[:4]``, so the same Ed25519 key used for
  plain note signatures (type 0x01) gets a different id and the two cannot be confused;
* the signed message is ``"cosignature/v1\\ntime <seconds>\\n"`` followed by the whole
  checkpoint text (extension lines included);
* the signature bytes after the key id are ``timestamp (8 bytes, big-endian) ||
  Ed25519 signature (64 bytes)``; the timestamp is POSIX seconds, at most 2**63 - 1.

The Ed25519 message does not name the cosigner, so a cosigner key must serve exactly one
cosigner name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from crypto.audit import _ed25519
from crypto.audit.note import (
    SIG_TYPE_ED25519,
    Ed25519NoteVerifier,
    NoteSignature,
    NoteVerifier,
    check_key_name,
    encode_vkey,
    key_id,
    parse_vkey,
)

__all__ = [
    "COSIGNATURE_V1_BYTES",
    "COSIGNATURE_V1_HEADER",
    "SIG_TYPE_COSIGNATURE_V1",
    "TIMESTAMP_BYTES",
    "TIMESTAMP_S_MAX",
    "CosignatureV1Signer",
    "CosignatureV1Verifier",
    "cosignature_timestamp",
    "cosignature_v1_message",
    "verifier_from_vkey",
]

SIG_TYPE_COSIGNATURE_V1 = 0x04
COSIGNATURE_V1_HEADER = b"cosignature/v1\n"
TIMESTAMP_BYTES = 8
TIMESTAMP_S_MAX = (1 << 63) - 1
COSIGNATURE_V1_BYTES = TIMESTAMP_BYTES + _ed25519.SIGNATURE_BYTES


def cosignature_v1_message(text: bytes, timestamp_s: int) -> bytes:
    """Return the message a cosignature/v1 signs for checkpoint ``text`` at a time."""
    return COSIGNATURE_V1_HEADER + b"time %d\n" % timestamp_s + text


def cosignature_timestamp(signature: NoteSignature) -> int:
    """Return the POSIX timestamp (seconds) carried by a cosignature/v1 signature."""
    if len(signature.signature) != COSIGNATURE_V1_BYTES:
        raise ValueError("not a cosignature/v1 signature")
    return int.from_bytes(signature.signature[:TIMESTAMP_BYTES], "big")


@dataclass(frozen=True, kw_only=True)
class CosignatureV1Verifier:
    """Verifies cosignature/v1 signatures by one named cosigner key."""

    name: str
    public_key: bytes
    key_id: int = field(init=False)

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.public_key) != _ed25519.PUBLIC_KEY_BYTES:
            raise ValueError(f"Ed25519 public key must be {_ed25519.PUBLIC_KEY_BYTES} bytes")
        identity = key_id(self.name, SIG_TYPE_COSIGNATURE_V1, self.public_key)
        object.__setattr__(self, "key_id", identity)

    def vkey(self) -> str:
        """Return the verifier key string ``<name>+<hex key id>+<base64(0x04 || key)>``."""
        return encode_vkey(self.name, SIG_TYPE_COSIGNATURE_V1, self.public_key)

    def verify(self, text: bytes, signature: bytes) -> bool:
        if len(signature) != COSIGNATURE_V1_BYTES:
            return False
        timestamp_s = int.from_bytes(signature[:TIMESTAMP_BYTES], "big")
        if timestamp_s > TIMESTAMP_S_MAX:
            return False
        message = cosignature_v1_message(text, timestamp_s)
        return _ed25519.verify(self.public_key, message, signature[TIMESTAMP_BYTES:])


@dataclass(frozen=True, kw_only=True)
class CosignatureV1Signer:
    """Produces cosignature/v1 signatures.  It signs whatever it is given: checking
    consistency first is :class:`~crypto.audit.cosigner.Cosigner`'s job."""

    name: str
    seed: bytes = field(repr=False)

    def __post_init__(self) -> None:
        check_key_name(self.name)
        _ed25519.public_key(self.seed)  # validates the seed length early

    def verifier(self) -> CosignatureV1Verifier:
        """Return the matching verifier."""
        return CosignatureV1Verifier(name=self.name, public_key=_ed25519.public_key(self.seed))

    def sign(self, text: bytes, timestamp_s: int) -> NoteSignature:
        """Cosign checkpoint ``text`` as of ``timestamp_s`` (POSIX seconds)."""
        if not 0 <= timestamp_s <= TIMESTAMP_S_MAX:
            raise ValueError(f"timestamp {timestamp_s} out of range")
        message = cosignature_v1_message(text, timestamp_s)
        signature = _ed25519.sign(self.seed, message)
        return NoteSignature(
            name=self.name,
            key_id=self.verifier().key_id,
            signature=timestamp_s.to_bytes(TIMESTAMP_BYTES, "big") + signature,
        )


def verifier_from_vkey(vkey: str) -> NoteVerifier:
    """Return a verifier for a verifier key string of type 0x01 (Ed25519 note signer) or
    0x04 (cosignature/v1 cosigner)."""
    parsed = parse_vkey(vkey)
    if parsed.sig_type == SIG_TYPE_ED25519:
        return Ed25519NoteVerifier(name=parsed.name, public_key=parsed.public_key)
    if parsed.sig_type == SIG_TYPE_COSIGNATURE_V1:
        return CosignatureV1Verifier(name=parsed.name, public_key=parsed.public_key)
    raise ValueError(f"unsupported verifier key type {parsed.sig_type:#04x}")
