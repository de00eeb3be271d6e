"""Incremental verification of one node's hash-chained, signed audit log.

Theory of operation
-------------------
A :class:`ChainVerifier` holds what it needs to judge the next record and nothing more:
the node's public key, the seq it expects next and the hash of the last good record.
Records are fed one at a time, in log order, straight from storage or the network, so a
log of any length is checked in constant memory.  Each record must

1. carry a valid signature by the node's key (checked first: an unsigned change tells
   nothing about the node, while a *signed* inconsistency below is evidence against it);
2. carry exactly the expected ``seq`` (a gap is a deleted record, a repeat or a step
   back a replayed or reordered one);
3. link to the previous record: ``prev_hash == record_hash(previous)``;
4. name the expected node, when the verifier was given one.

The first failure raises :class:`~crypto.audit.errors.ChainError` with the position of
the failing record and why, e.g. ``record 17: prev_hash does not match record 16``.
The verifier then stays failed: every later feed raises the same error, so a caller
cannot accidentally resume past a break.  Everything before the failure is known good,
and :attr:`ChainVerifier.next_seq` / :attr:`ChainVerifier.head_hash` describe it.

A verifier can start mid-log from a trusted point (a seq and the hash of the record
before it), for instance the head of a log verified earlier.
"""

from __future__ import annotations

from crypto.audit._ed25519 import PUBLIC_KEY_BYTES
from crypto.audit.errors import ChainError, RecordFormatError
from crypto.audit.record import GENESIS_PREV_HASH, SEQ_MAX, record_hash
from crypto.audit.signed import SignedRecord, decode_signed_record, verify_record_signature
from crypto.merkle import HASH_BYTES

__all__ = ["ChainVerifier"]


class ChainVerifier:
    """Checks signed records fed in log order; see the module docstring."""

    def __init__(
        self,
        *,
        public_key: bytes,
        node_id: str | None = None,
        next_seq: int = 0,
        prev_hash: bytes = GENESIS_PREV_HASH,
    ) -> None:
        """Start verifying at ``next_seq``, trusting ``prev_hash`` as the hash of record
        ``next_seq - 1`` (the genesis value when starting from 0).

        Args:
            public_key: the node's 32-byte Ed25519 public key.
            node_id: if given, every record must carry it.
            next_seq: seq of the first record to be fed.
            prev_hash: hash of the record before it.
        """
        if len(public_key) != PUBLIC_KEY_BYTES:
            raise ValueError(f"public key must be {PUBLIC_KEY_BYTES} bytes")
        if not 0 <= next_seq <= SEQ_MAX:
            raise ValueError(f"next_seq {next_seq} out of range")
        if len(prev_hash) != HASH_BYTES:
            raise ValueError(f"prev_hash must be {HASH_BYTES} bytes")
        if next_seq == 0 and prev_hash != GENESIS_PREV_HASH:
            raise ValueError("a chain starting at seq 0 starts from the genesis prev_hash")
        self._public_key = public_key
        self._node_id = node_id
        self._next_seq = next_seq
        self._head_hash = prev_hash
        self._failure: ChainError | None = None

    @property
    def next_seq(self) -> int:
        """Seq of the next record expected: the number of good records when started at 0."""
        return self._next_seq

    @property
    def head_hash(self) -> bytes:
        """Hash of the last good record (the ``prev_hash`` the next one must carry)."""
        return self._head_hash

    @property
    def failure(self) -> ChainError | None:
        """The error that stopped the chain, or ``None`` while it verifies."""
        return self._failure

    def feed(self, signed: SignedRecord) -> bytes:
        """Verify the next record; return its record hash (its Merkle leaf data).

        Raises :class:`ChainError` on the first bad record and on every call after it.
        """
        if self._failure is not None:
            raise self._failure
        position = self._next_seq
        reason = self._judge(signed)
        if reason is not None:
            self._failure = ChainError(position, reason)
            raise self._failure
        digest = record_hash(signed.record)
        self._next_seq += 1
        self._head_hash = digest
        return digest

    def feed_bytes(self, data: bytes) -> bytes:
        """Decode a record in its versioned wire form and :meth:`feed` it."""
        if self._failure is not None:
            raise self._failure
        try:
            signed = decode_signed_record(data)
        except RecordFormatError as exc:
            self._failure = ChainError(self._next_seq, f"malformed record: {exc}")
            raise self._failure from exc
        return self.feed(signed)

    def _judge(self, signed: SignedRecord) -> str | None:
        """Return why ``signed`` cannot be the next record, or ``None`` if it can."""
        record = signed.record
        position = self._next_seq
        if not verify_record_signature(signed, self._public_key):
            return "signature does not verify with the node's key"
        if record.seq != position:
            return (
                f"seq is {record.seq}, expected {position} (record missing, replayed or reordered)"
            )
        # Record 0 always carries the genesis value (Record enforces it), so a mismatch
        # here is at position >= 1.
        if record.prev_hash != self._head_hash:
            return f"prev_hash does not match record {position - 1}"
        if self._node_id is not None and record.node_id != self._node_id:
            return f"node_id is {record.node_id!r}, expected {self._node_id!r}"
        return None
