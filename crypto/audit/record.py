"""Audit records and their canonical encoding.

Theory of operation
-------------------
An audit record is one security-relevant event of one node::

    {"body": {...}, "kind": str, "node_id": str, "prev_hash": bin(32), "seq": int,
     "time": int}

encoded as a canonical msgpack map (:mod:`crypto.audit.canonical`: keys sorted, shortest
forms, bin for bytes, no floats).  ``seq`` counts the node's records from 0 with no
gap; ``prev_hash`` is the :func:`record_hash` of record ``seq - 1`` (32 zero bytes for
record 0), which chains each record to the whole history before it; ``time`` is the
node's wall clock in Unix milliseconds, informative only (clocks step; order is
``seq``).  ``kind`` names the event type and ``body`` carries its details.

``record_hash`` is SHA-256 of the canonical bytes.  It is what the node signs
(:mod:`crypto.audit.signed`), what the next record links to, and — as leaf data — what
the node's RFC 6962 Merkle tree is built over (:func:`record_leaf_hash`).

Decoding is strict: unknown or missing keys, wrong types and any non-canonical byte
raise :class:`~crypto.audit.errors.RecordFormatError` naming the field.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from crypto.audit.canonical import Value, freeze, pack, to_packable, unpack
from crypto.audit.errors import RecordFormatError
from crypto.merkle import HASH_BYTES, leaf_hash

__all__ = [
    "GENESIS_PREV_HASH",
    "KIND_CHARS_MAX",
    "NODE_ID_CHARS_MAX",
    "RECORD_BYTES_MAX",
    "RECORD_FIELDS",
    "SEQ_MAX",
    "TIME_MS_MAX",
    "Record",
    "decode_record",
    "encode_record",
    "record_hash",
    "record_leaf_hash",
]

GENESIS_PREV_HASH = bytes(HASH_BYTES)
"""``prev_hash`` of record 0: there is no record before it."""

RECORD_BYTES_MAX = 1 << 20
"""Largest encoded record: bodies are event details, a few hundred bytes typically;
1 MiB leaves room for certificate lists without letting a peer hand us a giant blob."""

NODE_ID_CHARS_MAX = 128
KIND_CHARS_MAX = 64
SEQ_MAX = (1 << 63) - 1
TIME_MS_MAX = (1 << 63) - 1

_T = TypeVar("_T")

RECORD_FIELDS = ("body", "kind", "node_id", "prev_hash", "seq", "time")
"""The wire keys, in canonical (sorted) order."""


@dataclass(frozen=True, kw_only=True)
class Record:
    """One audit record.  Validated and frozen on construction."""

    seq: int
    """Position in the node's log, from 0, without gaps."""
    prev_hash: bytes
    """:func:`record_hash` of record ``seq - 1``; :data:`GENESIS_PREV_HASH` for seq 0."""
    time_ms: int
    """Wall-clock time of the event, Unix milliseconds (wire key ``"time"``)."""
    node_id: str
    """Id of the node whose log this is."""
    kind: str
    """Event type, e.g. ``"member.admitted"``."""
    body: Mapping[str, Value] = field(default_factory=dict, hash=False)
    """Event details: canonical msgpack values, no floats.  Stored read-only."""

    def __post_init__(self) -> None:
        _check_int("seq", self.seq, SEQ_MAX)
        _check_int("time", self.time_ms, TIME_MS_MAX)
        if not isinstance(self.prev_hash, bytes) or len(self.prev_hash) != HASH_BYTES:
            raise RecordFormatError("prev_hash", f"must be {HASH_BYTES} bytes")
        if self.seq == 0 and self.prev_hash != GENESIS_PREV_HASH:
            raise RecordFormatError("prev_hash", "record 0 must have the genesis prev_hash")
        _check_text("node_id", self.node_id, NODE_ID_CHARS_MAX)
        _check_text("kind", self.kind, KIND_CHARS_MAX)
        if not isinstance(self.body, Mapping):
            raise RecordFormatError("body", "must be a map")
        object.__setattr__(self, "body", freeze(self.body, "body"))


def encode_record(record: Record) -> bytes:
    """Return the canonical msgpack encoding of ``record``."""
    data = pack(
        {
            "body": to_packable(record.body, "body"),
            "kind": record.kind,
            "node_id": record.node_id,
            "prev_hash": record.prev_hash,
            "seq": record.seq,
            "time": record.time_ms,
        }
    )
    if len(data) > RECORD_BYTES_MAX:
        raise RecordFormatError("record", f"encodes to more than {RECORD_BYTES_MAX} bytes")
    return data


def decode_record(data: bytes) -> Record:
    """Decode canonical record bytes; raise :class:`RecordFormatError` on anything else."""
    if len(data) > RECORD_BYTES_MAX:
        raise RecordFormatError("record", f"longer than {RECORD_BYTES_MAX} bytes")
    value = unpack(data, "record")
    if not isinstance(value, dict):
        raise RecordFormatError("record", "must be a msgpack map")
    for key in value:
        if key not in RECORD_FIELDS:
            raise RecordFormatError(str(key), "unknown field")
    for key in RECORD_FIELDS:
        if key not in value:
            raise RecordFormatError(key, "missing")
    record = Record(
        seq=_expect(value, "seq", int),
        prev_hash=_expect(value, "prev_hash", bytes),
        time_ms=_expect(value, "time", int),
        node_id=_expect(value, "node_id", str),
        kind=_expect(value, "kind", str),
        body=_expect(value, "body", dict),
    )
    if encode_record(record) != data:
        raise RecordFormatError("record", "not in canonical form")
    return record


def record_hash(record: Record) -> bytes:
    """Return SHA-256 of the canonical encoding: the record's identity."""
    return hashlib.sha256(encode_record(record)).digest()


def record_leaf_hash(record: Record) -> bytes:
    """Return the RFC 6962 leaf hash of ``record`` in its node's audit Merkle tree (the
    leaf data is the record hash)."""
    return leaf_hash(record_hash(record))


def _expect(value: Mapping[str, object], key: str, kind: type[_T]) -> _T:
    item = value[key]
    # bool is an int to Python but a distinct msgpack type; never a seq or a time.
    if not isinstance(item, kind) or isinstance(item, bool):
        raise RecordFormatError(key, f"must be {kind.__name__}, got {type(item).__name__}")
    return item


def _check_int(name: str, value: object, maximum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise RecordFormatError(name, "must be an integer")
    if not 0 <= value <= maximum:
        raise RecordFormatError(name, f"{value} is outside [0, {maximum}]")


def _check_text(name: str, value: object, chars_max: int) -> None:
    if not isinstance(value, str) or not value:
        raise RecordFormatError(name, "must be a non-empty string")
    if len(value) > chars_max:
        raise RecordFormatError(name, f"longer than {chars_max} characters")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise RecordFormatError(name, "contains control characters")
