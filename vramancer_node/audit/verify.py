"""Verifying a stored audit log end to end, naming the first bad record.

Theory of operation
-------------------
:func:`verify_log` reads one consistent :class:`~vramancer_node.audit.view.LogView` in
a single pass and trusts nothing but the node's public key:

1. **metadata**: the public key, node id (derived from the key) and origin; when the
   caller knows the node key from elsewhere (the node's key file) it must match;
2. **records**, in seq order, through a :class:`crypto.audit.ChainVerifier`: each is
   stored under its own seq (a gap is a deleted record), decodes, carries a valid
   signature, the expected seq and node id, and links to the previous record;
3. **tree**: each record's leaf is appended to the tree *recomputed* from the stored
   one with :func:`crypto.merkle.append_nodes` (which reads only nodes already checked),
   and every node it creates must be stored, byte for byte; afterwards the tree may hold
   no node beyond the records (the trace of deleted trailing records);
4. **checkpoints**, smallest first: each must be a well-formed C2SP checkpoint of this
   origin, signed by the node (cosignatures by the witnesses named in the metadata must
   verify too), stored under its own size, cover no more records than verified, and
   carry the root recomputed from the stored tree.

The first failure stops the pass.  Everything before it is known good: records
``[0, bad_seq)`` verified.  A record failure names the record (``record 17: prev_hash
does not match record 16``); a checkpoint failure names the checkpoint by its tree size.
Memory use is constant: records stream through the chain verifier, the tree is read
from the store.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from crypto.audit import AuditError, ChainError, ChainVerifier, open_checkpoint, verifier_from_vkey
from crypto.audit.note import Ed25519NoteVerifier, NoteVerifier
from crypto.identity import node_id_from_public_key
from crypto.merkle import MissingNodeError, append_nodes, leaf_hash, root_hash
from vramancer_node.audit.documents import SCHEMA_VERIFY
from vramancer_node.audit.errors import StoreCorruptError
from vramancer_node.audit.layout import tree_nodes_for_size
from vramancer_node.audit.view import LogMeta, LogView

__all__ = ["VerifyReport", "verify_log"]


@dataclass(frozen=True, kw_only=True)
class VerifyReport:
    """The outcome of :func:`verify_log`."""

    ok: bool
    node_id: str | None = None
    origin: str | None = None
    public_key: bytes | None = None
    records: int = 0
    """Records that verified: all of them when ``ok``, those before ``bad_seq`` if not."""
    checkpoints: int = 0
    """Checkpoints that verified."""
    checkpoint_size: int | None = None
    """Tree size of the latest verified checkpoint."""
    checkpoint_root: bytes | None = None
    cosigned_by: tuple[str, ...] = ()
    """Witnesses whose cosignature on the latest checkpoint verified."""
    bad_seq: int | None = None
    """Seq of the first bad record, when a record is at fault."""
    bad_checkpoint: int | None = None
    """Tree size of the first bad checkpoint, when a checkpoint is at fault."""
    reason: str | None = None
    """Why verification failed, naming the record or checkpoint."""

    @property
    def uncovered_records(self) -> int:
        """Verified records after the latest checkpoint (chained, not yet checkpointed)."""
        return self.records - (self.checkpoint_size or 0)

    def to_json(self) -> dict[str, Any]:
        """The ``vramancer.audit.verify.v1`` document."""
        checkpoint = None
        if self.checkpoint_size is not None and self.checkpoint_root is not None:
            checkpoint = {
                "size": self.checkpoint_size,
                "root_hash": self.checkpoint_root.hex(),
                "cosigned_by": list(self.cosigned_by),
            }
        public_key = self.public_key
        return {
            "schema": SCHEMA_VERIFY,
            "ok": self.ok,
            "node_id": self.node_id,
            "origin": self.origin,
            "public_key": base64.b64encode(public_key).decode() if public_key else None,
            "records": self.records,
            "checkpoints": self.checkpoints,
            "checkpoint": checkpoint,
            "uncovered_records": self.uncovered_records,
            "bad_seq": self.bad_seq,
            "bad_checkpoint": self.bad_checkpoint,
            "reason": self.reason,
        }


class _Failure(Exception):
    def __init__(self, reason: str, *, seq: int | None = None, checkpoint: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.seq = seq
        self.checkpoint = checkpoint


@dataclass
class _Progress:
    meta: LogMeta | None = None
    records: int = 0
    checkpoints: int = 0
    latest: tuple[int, bytes, tuple[str, ...]] | None = None


def verify_log(view: LogView, *, public_key: bytes | None = None) -> VerifyReport:
    """Verify the whole log in ``view``; see the module docstring.

    Args:
        view: a read-only view of the log.
        public_key: the node's public key when known independently of the log's own
            metadata (e.g. from its key file); it must then match.
    """
    progress = _Progress()
    failure: _Failure | None = None
    try:
        checked = progress.meta = _check_meta(view, public_key)
        _check_records(view, checked, progress)
        _check_checkpoints(view, checked, progress)
    except _Failure as exc:
        failure = exc
    meta = progress.meta
    latest = progress.latest
    return VerifyReport(
        ok=failure is None,
        node_id=meta.node_id if meta else None,
        origin=meta.origin if meta else None,
        public_key=meta.public_key if meta else None,
        records=progress.records,
        checkpoints=progress.checkpoints,
        checkpoint_size=latest[0] if latest else None,
        checkpoint_root=latest[1] if latest else None,
        cosigned_by=latest[2] if latest else (),
        bad_seq=failure.seq if failure else None,
        bad_checkpoint=failure.checkpoint if failure else None,
        reason=failure.reason if failure else None,
    )


def _check_meta(view: LogView, public_key: bytes | None) -> LogMeta:
    try:
        meta = view.meta()
    except StoreCorruptError as exc:
        raise _Failure(f"metadata: {exc}") from None
    if public_key is not None and public_key != meta.public_key:
        raise _Failure("metadata: the log's public key is not the node's key")
    if node_id_from_public_key(meta.public_key) != meta.node_id:
        raise _Failure(f"metadata: node id {meta.node_id} does not belong to the log's key")
    return meta


def _check_records(view: LogView, meta: LogMeta, progress: _Progress) -> None:
    chain = ChainVerifier(public_key=meta.public_key, node_id=meta.node_id)
    try:
        for key, data in view.records():
            seq = chain.next_seq
            if key != seq:
                raise _Failure(f"record {seq}: missing (the next stored key is {key})", seq=seq)
            try:
                digest = chain.feed_bytes(data)
            except ChainError as exc:
                raise _Failure(str(exc), seq=exc.seq) from None
            _check_tree_nodes(view, seq, digest)
            progress.records = chain.next_seq
    except StoreCorruptError as exc:
        raise _Failure(f"record {chain.next_seq}: {exc}", seq=chain.next_seq) from None
    size = chain.next_seq
    nodes, expected = view.tree_entries(), tree_nodes_for_size(size)
    if nodes != expected:
        raise _Failure(
            f"record {size}: missing, yet the tree holds {nodes} nodes where {size} records "
            f"make {expected}",
            seq=size,
        )


def _check_tree_nodes(view: LogView, seq: int, digest: bytes) -> None:
    try:
        created = append_nodes(seq, leaf_hash(digest), view)
    except MissingNodeError as exc:
        raise _Failure(
            f"record {seq}: tree node (level {exc.level}, index {exc.index}) is missing",
            seq=seq,
        ) from None
    for node in created:
        stored = view.tree_node(node.level, node.index)
        where = f"record {seq}: tree node (level {node.level}, index {node.index})"
        if stored is None:
            raise _Failure(f"{where} is missing (tree truncated?)", seq=seq)
        if stored != node.hash:
            raise _Failure(f"{where} does not match the records", seq=seq)


def _check_checkpoints(view: LogView, meta: LogMeta, progress: _Progress) -> None:
    own = Ed25519NoteVerifier(name=meta.origin, public_key=meta.public_key)
    verifiers: list[NoteVerifier] = [own]
    for name, vkey in sorted(meta.witnesses.items()):
        try:
            verifiers.append(verifier_from_vkey(vkey))
        except (AuditError, ValueError) as exc:
            raise _Failure(f"metadata: witness key of {name} is malformed: {exc}") from None
    records = progress.records
    try:
        sizes = list(view.checkpoint_sizes())
    except StoreCorruptError as exc:
        raise _Failure(f"checkpoints: {exc}") from None
    for size in sizes:
        if size > records:
            raise _Failure(
                f"record {records}: missing, yet checkpoint {size} covers records 0-{size - 1}",
                seq=records,
                checkpoint=size,
            )
        try:
            stored = view.checkpoint_at(size)
            assert stored is not None  # listed a moment ago in the same transaction
            opened = open_checkpoint(stored.note, verifiers)
        except (AuditError, StoreCorruptError) as exc:
            raise _Failure(f"checkpoint {size}: {exc}", checkpoint=size) from None
        checkpoint = opened.checkpoint
        names = {(signature.name, signature.key_id) for signature in opened.verified}
        if (own.name, own.key_id) not in names:
            raise _Failure(f"checkpoint {size}: not signed by the node", checkpoint=size)
        if checkpoint.origin != meta.origin or checkpoint.size != size:
            raise _Failure(
                f"checkpoint {size}: says origin {checkpoint.origin}, size {checkpoint.size}",
                checkpoint=size,
            )
        if root_hash(size, view) != checkpoint.root_hash:
            raise _Failure(
                f"checkpoint {size}: root hash does not match records 0-{size - 1}",
                checkpoint=size,
            )
        cosigners = tuple(sorted(name for name, _ in names if name != own.name))
        progress.checkpoints += 1
        progress.latest = (size, checkpoint.root_hash, cosigners)
