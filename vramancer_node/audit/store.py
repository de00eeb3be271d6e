"""The LMDB audit store: the only code that writes a node's audit log.

Theory of operation
-------------------
The files are laid out as :mod:`vramancer_node.audit.layout` describes.  An
:class:`AuditStore` is *thread-confined*: its write methods run on one dedicated thread
(:mod:`vramancer_node.audit.writer`), which therefore owns every write transaction,
and keeps the head of the log (size and hash of the last record) in memory.

Group commit: :meth:`AuditStore.append_batch` signs a whole batch of records, puts
them and the tree nodes they create in **one** write transaction and commits it once,
so the batch costs one ``fsync`` however many records it holds.  The in-memory head
moves only after the commit returned, i.e. once the batch is durable.

Durability: the environment is opened with ``sync=True`` and ``metasync=True`` (commit
returns only once data and meta pages are on disk) and never with ``writemap`` (a stray
write through the map could corrupt committed pages, and with ``writemap`` LMDB cannot
check what reaches the file).  A crash therefore leaves exactly the last committed
batch: records, tree and checkpoints never disagree.

Map growth: LMDB refuses a write that does not fit the map (``MapFullError``).  The
transaction is aborted, the map doubled (up to ``map_size_bytes_max``) and the whole
transaction retried.  LMDB forbids resizing while any transaction of the process is
open, so the resize waits on the :class:`~vramancer_node.audit.view.ResizeGate` that
every reader holds shared.

Reading a stopped node needs no writer: :func:`open_readonly`
(:mod:`vramancer_node.audit.readonly`, re-exported here) opens the files read-only
without LMDB's lock, excluded from a running daemon by the daemon's ``node.lock``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import lmdb

from crypto.audit import (
    GENESIS_PREV_HASH,
    AuditError,
    Checkpoint,
    Ed25519NoteSigner,
    Note,
    Record,
    Value,
    decode_signed_record,
    encode_signed_record,
    parse_note,
    record_hash,
    sign_checkpoint,
    sign_record,
)
from crypto.audit.note import NOTE_SIGNATURES_MAX
from crypto.merkle import append_nodes, leaf_hash, root_hash
from vramancer_node.audit.errors import (
    StoreCorruptError,
    StoreFullError,
    StoreMismatchError,
)
from vramancer_node.audit.layout import (
    DB_NAMES,
    FORMAT_VERSION,
    META_COSIGNED_PREFIX,
    META_FORMAT,
    META_NODE_ID,
    META_ORIGIN,
    META_PUBLIC_KEY,
    META_WITNESS_PREFIX,
    audit_dir,
    encode_key,
    tree_nodes_for_size,
    tree_position,
)
from vramancer_node.audit.readonly import open_readonly  # re-exported: the writer's twin
from vramancer_node.audit.view import AuditReader, Databases, LogView, ResizeGate, StoredCheckpoint
from vramancer_node.logs import get_logger

__all__ = [
    "AUDIT_DIR_MODE",
    "ENV_FILE_MODE",
    "MAP_SIZE_BYTES_INITIAL",
    "MAP_SIZE_BYTES_MAX",
    "MAP_SIZE_BYTES_MIN",
    "AppendEntry",
    "AuditStore",
    "LogOwner",
    "open_readonly",
    "open_store",
]

log = get_logger("audit.store")

MAP_SIZE_BYTES_MIN = 64 * 1024
"""Smallest map accepted: room for the four databases' root pages and some records."""
MAP_SIZE_BYTES_INITIAL = 16 * 1024 * 1024
"""Initial map of a new store: ~30 000 records of typical size before the first growth."""
MAP_SIZE_BYTES_MAX = 1 << 40
"""Largest map: address space only (LMDB maps it sparsely), far beyond any audit log."""

AUDIT_DIR_MODE = 0o700
ENV_FILE_MODE = 0o600
"""data.mdb and lock.mdb: the log names peers and events, owner only."""

COSIGNATURES_PER_CHECKPOINT_MAX = NOTE_SIGNATURES_MAX - 1
"""Cosignature lines kept on one checkpoint: a note holds at most NOTE_SIGNATURES_MAX
signatures and one of them is the node's own."""

_T = TypeVar("_T")


@dataclass(frozen=True, kw_only=True)
class LogOwner:
    """The node a log belongs to and the key that signs it."""

    node_id: str
    public_key: bytes
    origin: str
    seed: bytes = field(repr=False)
    """32-byte Ed25519 seed of the node key; never logged."""


@dataclass(frozen=True, kw_only=True)
class AppendEntry:
    """One record to append: what happened and when (the store adds seq and chain)."""

    kind: str
    body: Mapping[str, Value]
    time_ms: int
    """Wall-clock time of the event, Unix milliseconds."""


class AuditStore:
    """The writable store of one log.  Every method except :attr:`reader` and the
    counters must be called on the writer thread; see the module docstring."""

    def __init__(
        self,
        env: lmdb.Environment,
        dbs: Databases,
        owner: LogOwner,
        *,
        map_size_bytes_max: int,
    ) -> None:
        self._env = env
        self._dbs = dbs
        self._owner = owner
        self._gate = ResizeGate()
        self._map_size_bytes_max = map_size_bytes_max
        self.reader = AuditReader(env, dbs, self._gate)
        """Hands out read-only views; usable from any thread."""
        self.size = 0
        """Records durably stored (the seq of the next record)."""
        self.head_hash = GENESIS_PREV_HASH
        """Record hash of the last record (the next record's ``prev_hash``)."""
        self.commits_total = 0
        self.records_total = 0
        self.map_resizes_total = 0
        self._signer = Ed25519NoteSigner(name=owner.origin, seed=owner.seed)

    @property
    def map_size_bytes(self) -> int:
        return self.reader.map_size_bytes

    def load(self) -> None:
        """Initialise a new store, or check an existing one and load its head."""
        self.size, self.head_hash = self._write(self._load)

    def append_batch(self, entries: Sequence[AppendEntry]) -> list[int]:
        """Sign and append ``entries`` in one durable transaction; return their seqs."""
        first = self.size

        def work(txn: lmdb.Transaction) -> tuple[int, bytes]:
            size, head = self.size, self.head_hash
            view = LogView(txn, self._dbs)  # sees this transaction's own puts
            for entry in entries:
                record = Record(
                    seq=size,
                    prev_hash=head,
                    time_ms=entry.time_ms,
                    node_id=self._owner.node_id,
                    kind=entry.kind,
                    body=entry.body,
                )
                data = encode_signed_record(sign_record(record, self._owner.seed))
                self._put_new(txn, self._dbs.records, size, data)
                head = record_hash(record)
                for node in append_nodes(size, leaf_hash(head), view):
                    position = tree_position(node.level, node.index)
                    self._put_new(txn, self._dbs.tree, position, node.hash)
                size += 1
            return size, head

        self.size, self.head_hash = self._write(work)
        self.commits_total += 1
        self.records_total += len(entries)
        return list(range(first, self.size))

    def write_checkpoint(self) -> tuple[StoredCheckpoint, bool]:
        """Sign and store a checkpoint of the current tree; return it and whether it is
        new (an unchanged tree keeps its latest checkpoint)."""

        def work(txn: lmdb.Transaction) -> tuple[StoredCheckpoint, bool]:
            view = LogView(txn, self._dbs)
            latest = view.latest_checkpoint()
            if latest is not None and latest.size == self.size:
                return latest, False
            checkpoint = Checkpoint(
                origin=self._owner.origin, size=self.size, root_hash=root_hash(self.size, view)
            )
            note = sign_checkpoint(checkpoint, [self._signer])
            self._put_new(txn, self._dbs.checkpoints, self.size, note.encode())
            return StoredCheckpoint(size=self.size, note=note), True

        return self._write(work)

    def add_cosignature(
        self, size: int, line: str, witness_name: str, witness_vkey: str
    ) -> StoredCheckpoint:
        """Add a (verified) cosignature line to the checkpoint of ``size``, replacing an
        older one by the same witness, and remember the witness and what it cosigned."""

        def work(txn: lmdb.Transaction) -> StoredCheckpoint:
            view = LogView(txn, self._dbs)
            stored = view.checkpoint_at(size)
            if stored is None:
                raise LookupError(f"no checkpoint of tree size {size}")
            note = parse_note(stored.note)
            added = parse_note(note.encode() + line).signatures[-1]
            kept = [s for s in note.signatures[1:] if s.name != witness_name]
            kept = kept[-(COSIGNATURES_PER_CHECKPOINT_MAX - 1) :]
            updated = Note(text=note.text, signatures=(note.signatures[0], *kept, added))
            # The one overwrite in the store: same key, the note grows a signature line.
            txn.put(encode_key(size), updated.encode().encode(), db=self._dbs.checkpoints)
            meta = self._dbs.meta
            txn.put(META_WITNESS_PREFIX + witness_name.encode(), witness_vkey.encode(), db=meta)
            cosigned = view.meta().cosigned_sizes.get(witness_name, 0)
            txn.put(
                META_COSIGNED_PREFIX + witness_name.encode(),
                encode_key(max(size, cosigned)),
                db=meta,
            )
            return StoredCheckpoint(size=size, note=updated.encode())

        return self._write(work)

    def close(self) -> None:
        """Close the environment.  Committed data is already on disk."""
        self.reader.close()

    # -- internals ------------------------------------------------------------

    def _write(self, work: Callable[[lmdb.Transaction], _T]) -> _T:
        """Run ``work`` in a write transaction and commit it, doubling the map and
        retrying the whole transaction on ``MapFullError``."""
        while True:
            try:
                with self._env.begin(write=True, buffers=False) as txn:
                    return work(txn)
            except lmdb.MapFullError:
                self._grow_map()
            except lmdb.Error as exc:
                raise StoreCorruptError(f"writing the audit store failed: {exc}") from exc

    def _grow_map(self) -> None:
        current = self.map_size_bytes
        if current >= self._map_size_bytes_max:
            raise StoreFullError(f"the audit map is full at {current} bytes (map_size_bytes_max)")
        new_size = min(current * 2, self._map_size_bytes_max)
        with self._gate.exclusive():
            self._env.set_mapsize(new_size)
        self.map_resizes_total += 1
        log.info("audit map grown", extra={"map_size_bytes": new_size})

    def _put_new(self, txn: lmdb.Transaction, db: Any, key: int, value: bytes) -> None:
        # append=True: the key must be past the last one; LMDB refuses otherwise.
        if not txn.put(encode_key(key), value, db=db, append=True):
            name = self._dbs.name_of(db)
            raise StoreCorruptError(f"{name} database: key {key} is not past the last key")

    def _load(self, txn: lmdb.Transaction) -> tuple[int, bytes]:
        view = LogView(txn, self._dbs)
        meta = view.meta()
        expected = (self._owner.node_id, self._owner.public_key, self._owner.origin)
        if (meta.node_id, meta.public_key, meta.origin) != expected:
            raise StoreMismatchError(
                f"the audit log belongs to {meta.origin} (node {meta.node_id}), not to "
                f"{self._owner.origin}; move <state-dir>/audit aside to start a new log"
            )
        if meta.format_version != FORMAT_VERSION:
            raise StoreCorruptError(f"unsupported audit store format {meta.format_version}")
        size = view.size
        nodes = view.tree_entries()
        if view.record_entries() != size or nodes != tree_nodes_for_size(size):
            raise StoreCorruptError(
                f"audit store holds {view.record_entries()} records up to seq {size - 1} and "
                f"{nodes} tree nodes; run `vramancer audit verify` to find the damage"
            )
        if size == 0:
            return 0, GENESIS_PREV_HASH
        data = view.record_bytes(size - 1)
        try:
            last = decode_signed_record(data or b"").record
        except AuditError as exc:
            raise StoreCorruptError(f"audit record {size - 1} is malformed: {exc}") from exc
        return size, record_hash(last)


def open_store(
    state_dir: Path,
    owner: LogOwner,
    *,
    map_size_bytes_initial: int = MAP_SIZE_BYTES_INITIAL,
    map_size_bytes_max: int = MAP_SIZE_BYTES_MAX,
) -> AuditStore:
    """Open (creating if needed) the writable store of ``state_dir`` and load its head.

    Call it on the writer thread.  The environment is opened with ``sync=True``,
    ``metasync=True``, ``writemap=False``: see the module docstring.
    """
    if not MAP_SIZE_BYTES_MIN <= map_size_bytes_initial <= map_size_bytes_max:
        raise ValueError(
            f"map sizes must satisfy {MAP_SIZE_BYTES_MIN} <= initial "
            f"({map_size_bytes_initial}) <= max ({map_size_bytes_max})"
        )
    directory = audit_dir(state_dir)
    try:
        directory.mkdir(mode=AUDIT_DIR_MODE, exist_ok=True)
        env = lmdb.open(
            str(directory),
            map_size=map_size_bytes_initial,
            subdir=True,
            max_dbs=len(DB_NAMES),
            sync=True,
            metasync=True,
            writemap=False,
            map_async=False,
            mode=ENV_FILE_MODE,
            create=True,
        )
    except (OSError, lmdb.Error) as exc:
        raise StoreCorruptError(f"cannot open the audit store in {directory}: {exc}") from exc
    try:
        # One transaction creates the databases and the metadata: a crash during the
        # first start leaves either a complete empty log or no log at all.
        with env.begin(write=True) as txn:
            dbs = Databases.open(env, create=True, txn=txn)
            if not LogView(txn, dbs).has_meta():
                _initialise_meta(txn, dbs, owner)
        store = AuditStore(env, dbs, owner, map_size_bytes_max=map_size_bytes_max)
        store.load()
    except BaseException:
        env.close()
        raise
    return store


def _initialise_meta(txn: lmdb.Transaction, dbs: Databases, owner: LogOwner) -> None:
    txn.put(META_FORMAT, str(FORMAT_VERSION).encode(), db=dbs.meta)
    txn.put(META_NODE_ID, owner.node_id.encode(), db=dbs.meta)
    txn.put(META_PUBLIC_KEY, owner.public_key, db=dbs.meta)
    txn.put(META_ORIGIN, owner.origin.encode(), db=dbs.meta)
