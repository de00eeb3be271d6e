"""Reading an audit log: consistent read-only views over one LMDB read transaction.

Theory of operation
-------------------
A :class:`LogView` wraps one LMDB transaction, so everything read through it — records,
tree nodes, checkpoints, metadata — comes from the same committed state, however many
writes land meanwhile.  It implements :class:`crypto.merkle.SubtreeReader`, so roots and
proofs are computed straight from the stored tree.  Views are cheap; hold one for one
task (a verify pass, a tail, a proof) and let it go.

An :class:`AuditReader` owns an environment and hands out views.  Read transactions
may be used from any thread (py-lmdb opens environments with ``MDB_NOTLS``), but LMDB
forbids growing the map while any transaction of the process is open, so views hold a
:class:`ResizeGate` shared and the writer takes it alone to resize (see
:mod:`vramancer_node.audit.store`).

Error handling
--------------
Missing databases or malformed metadata raise
:class:`~vramancer_node.audit.errors.StoreCorruptError`; LMDB errors are translated to
it.  Damaged *records* are not an error here: :mod:`vramancer_node.audit.verify` judges
them and names the first bad one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import lmdb

from crypto.merkle import MissingNodeError
from vramancer_node.audit.errors import AuditClosedError, StoreCorruptError, StoreMissingError
from vramancer_node.audit.layout import (
    DB_NAMES,
    KEY_BYTES,
    META_COSIGNED_PREFIX,
    META_FORMAT,
    META_NODE_ID,
    META_ORIGIN,
    META_PUBLIC_KEY,
    META_WITNESS_PREFIX,
    decode_key,
    encode_key,
    tree_position,
)

__all__ = [
    "AuditReader",
    "Databases",
    "LogMeta",
    "LogView",
    "ResizeGate",
    "StoredCheckpoint",
]


class ResizeGate:
    """Readers share it; growing the map takes it alone.  A waiting resize holds back
    new readers, so a steady stream of readers cannot starve the writer."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._readers = 0
        self._resizing = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._condition:
            while self._resizing:
                self._condition.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._condition:
                self._readers -= 1
                if not self._readers:
                    self._condition.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._condition:
            self._resizing = True
            while self._readers:
                self._condition.wait()
        try:
            yield
        finally:
            with self._condition:
                self._resizing = False
                self._condition.notify_all()


@dataclass(frozen=True)
class Databases:
    """Handles of the four named databases of one environment."""

    records: Any
    tree: Any
    checkpoints: Any
    meta: Any

    @classmethod
    def open(
        cls, env: lmdb.Environment, *, create: bool, txn: lmdb.Transaction | None = None
    ) -> Databases:
        """Open the databases (creating them in ``txn`` if ``create``).  Without
        ``create``, none at all means the log was never initialised
        (:class:`StoreMissingError`); some missing means corruption."""
        handles = []
        missing = []
        for name in DB_NAMES:
            try:
                handles.append(env.open_db(name, txn=txn, create=create))
            except lmdb.NotFoundError:
                missing.append(name.decode())
        if len(missing) == len(DB_NAMES):
            raise StoreMissingError("the audit log was never initialised")
        if missing:
            raise StoreCorruptError(f"audit store has no {', '.join(missing)} database")
        return cls(*handles)

    def name_of(self, db: Any) -> str:
        handles = (self.records, self.tree, self.checkpoints, self.meta)
        name: bytes = dict(zip(handles, DB_NAMES, strict=True))[db]
        return name.decode()


@dataclass(frozen=True, kw_only=True)
class LogMeta:
    """Who a log belongs to, and which witnesses cosigned it."""

    format_version: int
    node_id: str
    public_key: bytes
    """The node's 32-byte Ed25519 public key."""
    origin: str
    """C2SP origin of the log, ``vramancer/<cluster id>/<node id>``."""
    witnesses: Mapping[str, str]
    """Cosigner name -> verifier key string, for every witness that cosigned."""
    cosigned_sizes: Mapping[str, int]
    """Cosigner name -> the largest of our tree sizes it cosigned."""


@dataclass(frozen=True, kw_only=True)
class StoredCheckpoint:
    """A checkpoint as stored: its tree size (the key) and its signed note."""

    size: int
    note: str
    """The C2SP signed note: checkpoint text, the node's signature, cosignatures."""


class LogView:
    """A read-only, consistent view of one log (one LMDB transaction); implements
    :class:`crypto.merkle.SubtreeReader`."""

    def __init__(self, txn: lmdb.Transaction, dbs: Databases) -> None:
        self._txn = txn
        self._dbs = dbs

    @property
    def size(self) -> int:
        """Number of records: one more than the last stored seq (0 when empty)."""
        last = self._last_key(self._dbs.records)
        return 0 if last is None else last + 1

    def record_entries(self) -> int:
        """Number of stored records (differs from :attr:`size` only in a damaged log)."""
        return int(self._txn.stat(self._dbs.records)["entries"])

    def tree_entries(self) -> int:
        """Number of stored tree nodes."""
        return int(self._txn.stat(self._dbs.tree)["entries"])

    def record_bytes(self, seq: int) -> bytes | None:
        """Return the stored signed record ``seq`` (versioned wire form), or ``None``."""
        value = self._txn.get(encode_key(seq), db=self._dbs.records)
        return None if value is None else bytes(value)

    def records(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, bytes]]:
        """Yield ``(key, signed record bytes)`` in key order from ``start`` up to ``stop``
        (exclusive).  Keys are what is stored; a gap means a missing record."""
        for key, value in self._scan(self._dbs.records, start):
            if stop is not None and key >= stop:
                return
            yield key, value

    def tree_node(self, level: int, index: int) -> bytes | None:
        """Return the stored hash of perfect subtree ``(level, index)``, or ``None``."""
        value = self._txn.get(encode_key(tree_position(level, index)), db=self._dbs.tree)
        return None if value is None else bytes(value)

    def subtree_hash(self, level: int, index: int) -> bytes:
        """:class:`~crypto.merkle.SubtreeReader`: the stored node, or
        :class:`~crypto.merkle.MissingNodeError`."""
        value = self.tree_node(level, index)
        if value is None:
            raise MissingNodeError(level=level, index=index)
        return value

    def checkpoint_sizes(self) -> Iterator[int]:
        """Yield the tree size of every stored checkpoint, smallest first."""
        for size, _ in self._scan(self._dbs.checkpoints, 0):
            yield size

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """Return the checkpoint of the largest tree size, or ``None`` if none exists."""
        size = self._last_key(self._dbs.checkpoints)
        return None if size is None else self.checkpoint_at(size)

    def checkpoint_at(self, size: int) -> StoredCheckpoint | None:
        """Return the checkpoint of tree size ``size``, or ``None``."""
        value = self._txn.get(encode_key(size), db=self._dbs.checkpoints)
        if value is None:
            return None
        return StoredCheckpoint(size=size, note=_text(bytes(value), f"checkpoint {size}"))

    def meta(self) -> LogMeta:
        """Return the log's metadata; :class:`StoreCorruptError` if any is missing."""
        get = self._meta_value
        format_text = _text(get(META_FORMAT), "format")
        if not format_text.isdigit():
            raise StoreCorruptError(f"audit metadata format {format_text!r} is not a number")
        public_key = get(META_PUBLIC_KEY)
        if len(public_key) != 32:
            raise StoreCorruptError("audit metadata public_key is not 32 bytes")
        cosigned = {
            name: _size(value, name) for name, value in self._meta_prefixed(META_COSIGNED_PREFIX)
        }
        witnesses = {
            name: _text(value, name) for name, value in self._meta_prefixed(META_WITNESS_PREFIX)
        }
        return LogMeta(
            format_version=int(format_text),
            node_id=_text(get(META_NODE_ID), "node_id"),
            public_key=public_key,
            origin=_text(get(META_ORIGIN), "origin"),
            witnesses=witnesses,
            cosigned_sizes=cosigned,
        )

    def has_meta(self) -> bool:
        """Whether the log was ever initialised (a fresh store has no metadata)."""
        return self._txn.get(META_FORMAT, db=self._dbs.meta) is not None

    def _meta_value(self, name: bytes) -> bytes:
        value = self._txn.get(name, db=self._dbs.meta)
        if value is None:
            raise StoreCorruptError(f"audit metadata has no {name.decode()} entry")
        return bytes(value)

    def _meta_prefixed(self, prefix: bytes) -> Iterator[tuple[str, bytes]]:
        with self._txn.cursor(db=self._dbs.meta) as cursor:
            if not cursor.set_range(prefix):
                return
            for raw_key, value in cursor:
                key = bytes(raw_key)
                if not key.startswith(prefix):
                    return
                yield _text(key[len(prefix) :], "metadata name"), bytes(value)

    def _scan(self, db: Any, start: int) -> Iterator[tuple[int, bytes]]:
        with self._txn.cursor(db=db) as cursor:
            if not cursor.set_range(encode_key(start)):
                return
            for key, value in cursor:
                yield self._decode_key(db, bytes(key)), bytes(value)

    def _last_key(self, db: Any) -> int | None:
        with self._txn.cursor(db=db) as cursor:
            if not cursor.last():
                return None
            return self._decode_key(db, bytes(cursor.key()))

    def _decode_key(self, db: Any, key: bytes) -> int:
        try:
            return decode_key(bytes(key))
        except ValueError as exc:
            raise StoreCorruptError(f"{self._dbs.name_of(db)} database: {exc}") from exc


class AuditReader:
    """An open audit environment that hands out :class:`LogView` s; see the module
    docstring.  Close it when done (it is also a context manager)."""

    def __init__(
        self,
        env: lmdb.Environment,
        dbs: Databases,
        gate: ResizeGate,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._env = env
        self._dbs = dbs
        self._gate = gate
        self._on_close = on_close
        self._closed = False

    @contextmanager
    def view(self) -> Iterator[LogView]:
        """A consistent read-only view, valid inside the ``with`` block only."""
        with self._gate.shared():
            if self._closed:
                raise AuditClosedError("the audit store is closed")
            try:
                with self._env.begin(write=False, buffers=False) as txn:
                    yield LogView(txn, self._dbs)
            except lmdb.Error as exc:
                raise StoreCorruptError(f"reading the audit store failed: {exc}") from exc

    @property
    def map_size_bytes(self) -> int:
        return int(self._env.info()["map_size"])

    def close(self) -> None:
        """Close the environment (idempotent)."""
        with self._gate.exclusive():  # wait for views in other threads to end
            if self._closed:
                return
            self._closed = True
            self._env.close()
        if self._on_close is not None:
            self._on_close()

    def __enter__(self) -> AuditReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _text(value: bytes, what: str) -> str:
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StoreCorruptError(f"audit store {what} is not UTF-8") from exc


def _size(value: bytes, what: str) -> int:
    if len(value) != KEY_BYTES:
        raise StoreCorruptError(f"audit metadata cosigned size of {what} is malformed")
    return int.from_bytes(value, "big")
