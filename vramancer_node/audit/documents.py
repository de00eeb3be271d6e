"""The JSON forms of audit data, shared by the HTTP API and the offline CLI.

Every document carries a versioned ``"schema"``; a field may be added within a version,
never removed or changed in meaning.  Hashes are lowercase hex; signatures and whole
signed records are standard base64 (``signed_record`` is the exact stored byte form, so
a third party can re-verify an export without trusting our JSON).  Body values that are
bytes become base64 strings.

=========================================  ==========================================
schema                                     document
=========================================  ==========================================
``vramancer.audit.record.v1``              one record (tail entries, export lines)
``vramancer.audit.tail.v1``                the last records of the log
``vramancer.audit.proof.v1``               an inclusion proof against a checkpoint
``vramancer.audit.checkpoint.v1``          a stored checkpoint (export's last line)
``vramancer.audit.export.v1``              export's first line: whose log it is
``vramancer.audit.verify.v1``              a verification report (:mod:`.verify`)
=========================================  ==========================================
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from typing import Any

from crypto.audit import (
    AuditError,
    decode_signed_record,
    open_checkpoint,
    record_hash,
    verifier_from_vkey,
)
from crypto.audit.note import Ed25519NoteVerifier, NoteVerifier
from crypto.merkle import MerkleError, inclusion_proof, leaf_hash, verify_inclusion
from vramancer_node.audit.errors import StoreCorruptError
from vramancer_node.audit.view import LogMeta, LogView, StoredCheckpoint

__all__ = [
    "SCHEMA_CHECKPOINT",
    "SCHEMA_EXPORT",
    "SCHEMA_PROOF",
    "SCHEMA_RECORD",
    "SCHEMA_TAIL",
    "SCHEMA_VERIFY",
    "TAIL_RECORDS_MAX",
    "checkpoint_document",
    "export_documents",
    "export_header",
    "proof_document",
    "record_document",
    "tail_document",
]

SCHEMA_RECORD = "vramancer.audit.record.v1"
SCHEMA_TAIL = "vramancer.audit.tail.v1"
SCHEMA_PROOF = "vramancer.audit.proof.v1"
SCHEMA_CHECKPOINT = "vramancer.audit.checkpoint.v1"
SCHEMA_EXPORT = "vramancer.audit.export.v1"
SCHEMA_VERIFY = "vramancer.audit.verify.v1"

TAIL_RECORDS_MAX = 1000
"""Most records one tail returns; export streams the whole log."""


def record_document(seq: int, data: bytes) -> dict[str, Any]:
    """Return the JSON form of stored record ``seq``; :class:`StoreCorruptError` if it
    does not decode (``verify`` says why)."""
    try:
        signed = decode_signed_record(data)
    except AuditError as exc:
        raise StoreCorruptError(
            f"audit record {seq} is malformed ({exc}); run `vramancer audit verify`"
        ) from exc
    record = signed.record
    return {
        "schema": SCHEMA_RECORD,
        "seq": record.seq,
        "time_ms": record.time_ms,
        "node_id": record.node_id,
        "kind": record.kind,
        "body": _json_value(record.body),
        "prev_hash": record.prev_hash.hex(),
        "hash": record_hash(record).hex(),
        "signature": _b64(signed.signature),
        "signed_record": _b64(data),
    }


def tail_document(view: LogView, n: int) -> dict[str, Any]:
    """Return the last ``n`` records (at most :data:`TAIL_RECORDS_MAX`), oldest first."""
    if not 1 <= n <= TAIL_RECORDS_MAX:
        raise ValueError(f"n must be between 1 and {TAIL_RECORDS_MAX}, got {n}")
    size = view.size
    records = [record_document(seq, data) for seq, data in view.records(max(0, size - n))]
    return {"schema": SCHEMA_TAIL, "size": size, "records": records}


def checkpoint_document(checkpoint: StoredCheckpoint) -> dict[str, Any]:
    return {"schema": SCHEMA_CHECKPOINT, "size": checkpoint.size, "note": checkpoint.note}


def export_header(meta: LogMeta, size: int) -> dict[str, Any]:
    """First line of an export: whose log it is and how to check it."""
    return {
        "schema": SCHEMA_EXPORT,
        "node_id": meta.node_id,
        "origin": meta.origin,
        "public_key": _b64(meta.public_key),
        "size": size,
        "witnesses": dict(sorted(meta.witnesses.items())),
    }


def export_documents(view: LogView) -> Iterator[dict[str, Any]]:
    """Yield a whole export: header, every record, then the latest checkpoint."""
    size = view.size
    yield export_header(view.meta(), size)
    for seq, data in view.records(0, size):
        yield record_document(seq, data)
    latest = view.latest_checkpoint()
    if latest is not None:
        yield checkpoint_document(latest)


def proof_document(view: LogView, seq: int, checkpoint: StoredCheckpoint) -> dict[str, Any]:
    """Return the inclusion proof of record ``seq`` in the tree ``checkpoint`` signs.

    The proof is checked against the checkpoint's root before it is handed out, so a
    damaged store yields an error, never a wrong proof.
    """
    if not 0 <= seq < checkpoint.size:
        raise LookupError(
            f"record {seq} is not covered by the checkpoint of size {checkpoint.size}"
        )
    data = view.record_bytes(seq)
    if data is None:
        raise StoreCorruptError(f"audit record {seq} is missing; run `vramancer audit verify`")
    record = record_document(seq, data)
    meta = view.meta()
    verifiers: list[NoteVerifier] = [
        Ed25519NoteVerifier(name=meta.origin, public_key=meta.public_key)
    ]
    verifiers += [verifier_from_vkey(vkey) for vkey in meta.witnesses.values()]
    try:
        opened = open_checkpoint(checkpoint.note, verifiers)
        leaf = leaf_hash(bytes.fromhex(record["hash"]))
        proof = inclusion_proof(seq, checkpoint.size, view)
        verify_inclusion(seq, checkpoint.size, leaf, proof, opened.checkpoint.root_hash)
    except (AuditError, MerkleError, ValueError, LookupError) as exc:
        raise StoreCorruptError(
            f"cannot prove record {seq} against checkpoint {checkpoint.size} ({exc}); "
            f"run `vramancer audit verify`"
        ) from exc
    return {
        "schema": SCHEMA_PROOF,
        "seq": seq,
        "record": record,
        "leaf_hash": leaf.hex(),
        "tree_size": checkpoint.size,
        "root_hash": opened.checkpoint.root_hash.hex(),
        "inclusion_proof": [node.hex() for node in proof],
        "checkpoint": checkpoint.note,
        "signed_by": [signature.name for signature in opened.verified],
    }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _json_value(value: object) -> Any:
    if isinstance(value, bytes):
        return _b64(value)
    if isinstance(value, Mapping):
        return {str(key): _json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    return value
