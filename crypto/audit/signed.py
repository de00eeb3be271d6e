"""Signed audit records: a record, its node's Ed25519 signature, and their wire form.

Theory of operation
-------------------
The node signs the record hash (:func:`~crypto.audit.record.record_hash`), prefixed
with :data:`RECORD_SIGNATURE_CONTEXT`.  The prefix is domain separation: the same node
key also signs other 32-byte values (the Noise handshake hash in the identity
challenge), and a signature made for one purpose must never verify for another.

Storage and transport use a versioned byte layout, fixed-width so that it needs no
parser beyond slicing::

    version (1 byte, SIGNED_RECORD_VERSION) || signature (64 bytes) || canonical record

A new version number is the only way to change this layout; decoders refuse versions
they do not know.
"""

from __future__ import annotations

from dataclasses import dataclass

from crypto.audit import _ed25519
from crypto.audit.errors import RecordFormatError
from crypto.audit.record import (
    RECORD_BYTES_MAX,
    Record,
    decode_record,
    encode_record,
    record_hash,
)

__all__ = [
    "RECORD_SIGNATURE_CONTEXT",
    "SIGNATURE_BYTES",
    "SIGNED_RECORD_BYTES_MAX",
    "SIGNED_RECORD_VERSION",
    "SignedRecord",
    "decode_signed_record",
    "encode_signed_record",
    "sign_record",
    "verify_record_signature",
]

SIGNED_RECORD_VERSION = 1
"""First byte of an encoded signed record.  Append only: never reuse a number."""

RECORD_SIGNATURE_CONTEXT = b"vramancer/audit-record/v1\n"
"""Prefix of the signed message, ahead of the 32-byte record hash."""

SIGNATURE_BYTES = _ed25519.SIGNATURE_BYTES
_HEADER_BYTES = 1 + SIGNATURE_BYTES
SIGNED_RECORD_BYTES_MAX = _HEADER_BYTES + RECORD_BYTES_MAX


@dataclass(frozen=True, kw_only=True)
class SignedRecord:
    """A record with its node's signature.  The signature is not checked here; a
    :class:`~crypto.audit.chain.ChainVerifier` or :func:`verify_record_signature` does."""

    record: Record
    """The record."""
    signature: bytes
    """64-byte Ed25519 signature over ``RECORD_SIGNATURE_CONTEXT || record_hash``."""

    def __post_init__(self) -> None:
        if not isinstance(self.signature, bytes) or len(self.signature) != SIGNATURE_BYTES:
            raise RecordFormatError("signature", f"must be {SIGNATURE_BYTES} bytes")


def _signed_message(record: Record) -> bytes:
    return RECORD_SIGNATURE_CONTEXT + record_hash(record)


def sign_record(record: Record, signing_key: bytes) -> SignedRecord:
    """Sign ``record`` with the node's 32-byte Ed25519 seed."""
    return SignedRecord(
        record=record, signature=_ed25519.sign(signing_key, _signed_message(record))
    )


def verify_record_signature(signed: SignedRecord, public_key: bytes) -> bool:
    """Return whether ``signed`` carries a valid signature by ``public_key`` (32 bytes)."""
    return _ed25519.verify(public_key, _signed_message(signed.record), signed.signature)


def encode_signed_record(signed: SignedRecord) -> bytes:
    """Return the versioned wire form of ``signed``."""
    return bytes([SIGNED_RECORD_VERSION]) + signed.signature + encode_record(signed.record)


def decode_signed_record(data: bytes) -> SignedRecord:
    """Decode the versioned wire form; raise :class:`RecordFormatError` if malformed."""
    if not data:
        raise RecordFormatError("version", "empty input")
    if data[0] != SIGNED_RECORD_VERSION:
        raise RecordFormatError("version", f"unknown signed-record version {data[0]}")
    if len(data) > SIGNED_RECORD_BYTES_MAX:
        raise RecordFormatError("record", f"longer than {SIGNED_RECORD_BYTES_MAX} bytes")
    if len(data) <= _HEADER_BYTES:
        raise RecordFormatError("signature", "truncated before the record")
    return SignedRecord(record=decode_record(data[_HEADER_BYTES:]), signature=data[1:_HEADER_BYTES])
