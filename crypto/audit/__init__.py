"""The cryptographic core of the audit log: records, chains, checkpoints, cosignatures.

Theory of operation
-------------------
Every node appends each security-relevant event to its own log:

1. a :class:`Record` ``{seq, prev_hash, time, node_id, kind, body}`` is encoded as
   canonical msgpack (:mod:`~crypto.audit.record`, :mod:`~crypto.audit.canonical`) and
   hashed; ``prev_hash`` is the hash of the record before, so the records form a hash
   chain and changing one changes every later hash;
2. the node signs it (:mod:`~crypto.audit.signed`), giving a :class:`SignedRecord`
   with a versioned byte form for LMDB and the wire;
3. anyone with the node's public key checks a log, record by record, with a
   :class:`ChainVerifier` (:mod:`~crypto.audit.chain`), which names the first bad
   record and why;
4. the record hashes are the leaves of the node's RFC 6962 Merkle tree
   (:mod:`crypto.merkle`); the node publishes its tree head as a C2SP checkpoint
   (:mod:`~crypto.audit.checkpoint`), a signed note (:mod:`~crypto.audit.note`);
5. other members cosign checkpoints (:mod:`~crypto.audit.cosigner`, using the
   C2SP cosignature/v1 format of :mod:`~crypto.audit.cosignature`) only after checking
   them consistent with what they cosigned before, so a node that rewrites or forks its
   log is caught.

Everything here is pure: no I/O, no clock (time is an argument), no global randomness.
Keys are raw bytes: 32-byte Ed25519 seeds to sign, 32-byte public keys to verify.  The
exception tree is drawn in :mod:`~crypto.audit.errors`.
"""

from __future__ import annotations

from crypto.audit.canonical import Value
from crypto.audit.chain import ChainVerifier
from crypto.audit.checkpoint import (
    ORIGIN_PREFIX,
    Checkpoint,
    VerifiedCheckpoint,
    audit_origin,
    open_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
)
from crypto.audit.cosignature import (
    SIG_TYPE_COSIGNATURE_V1,
    CosignatureV1Signer,
    CosignatureV1Verifier,
    cosignature_timestamp,
    cosignature_v1_message,
    verifier_from_vkey,
)
from crypto.audit.cosigner import COSIGNER_ORIGINS_MAX, Cosigner, TreeHead
from crypto.audit.errors import (
    AuditError,
    BadSignatureError,
    ChainError,
    CheckpointFormatError,
    ConsistencyError,
    CosignError,
    CosignerStateError,
    NoteError,
    NoteFormatError,
    OldSizeMismatchError,
    RecordFormatError,
    RollbackError,
    SplitViewError,
    UnverifiedNoteError,
)
from crypto.audit.note import (
    SIG_TYPE_ED25519,
    Ed25519NoteSigner,
    Ed25519NoteVerifier,
    Note,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    VerifierKey,
    encode_vkey,
    key_id,
    parse_note,
    parse_vkey,
    sign_note,
    verify_note,
)
from crypto.audit.record import (
    GENESIS_PREV_HASH,
    RECORD_BYTES_MAX,
    Record,
    decode_record,
    encode_record,
    record_hash,
    record_leaf_hash,
)
from crypto.audit.signed import (
    RECORD_SIGNATURE_CONTEXT,
    SIGNED_RECORD_VERSION,
    SignedRecord,
    decode_signed_record,
    encode_signed_record,
    sign_record,
    verify_record_signature,
)

__all__ = [
    "COSIGNER_ORIGINS_MAX",
    "GENESIS_PREV_HASH",
    "ORIGIN_PREFIX",
    "RECORD_BYTES_MAX",
    "RECORD_SIGNATURE_CONTEXT",
    "SIGNED_RECORD_VERSION",
    "SIG_TYPE_COSIGNATURE_V1",
    "SIG_TYPE_ED25519",
    "AuditError",
    "BadSignatureError",
    "ChainError",
    "ChainVerifier",
    "Checkpoint",
    "CheckpointFormatError",
    "ConsistencyError",
    "CosignError",
    "CosignatureV1Signer",
    "CosignatureV1Verifier",
    "Cosigner",
    "CosignerStateError",
    "Ed25519NoteSigner",
    "Ed25519NoteVerifier",
    "Note",
    "NoteError",
    "NoteFormatError",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "OldSizeMismatchError",
    "Record",
    "RecordFormatError",
    "RollbackError",
    "SignedRecord",
    "SplitViewError",
    "TreeHead",
    "UnverifiedNoteError",
    "Value",
    "VerifiedCheckpoint",
    "VerifierKey",
    "audit_origin",
    "cosignature_timestamp",
    "cosignature_v1_message",
    "decode_record",
    "decode_signed_record",
    "encode_record",
    "encode_signed_record",
    "encode_vkey",
    "key_id",
    "open_checkpoint",
    "parse_checkpoint",
    "parse_note",
    "parse_vkey",
    "record_hash",
    "record_leaf_hash",
    "sign_checkpoint",
    "sign_note",
    "sign_record",
    "verifier_from_vkey",
    "verify_note",
    "verify_record_signature",
]
