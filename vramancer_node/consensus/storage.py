"""The LMDB store of one node's Raft state: hard state, log entries, snapshot.

Theory of operation
-------------------
``<state-dir>/consensus/`` is one LMDB environment with two databases:

``meta``     ``hard`` -> the encoded :class:`~protocol.raft.HardState`,
             ``snapshot`` -> the encoded :class:`~protocol.raft.Snapshot`,
             ``applied`` -> 8-byte big-endian index of the last entry whose
             effects left the node (audit records), so a restart does not repeat
             them, ``format`` -> :data:`FORMAT_VERSION`
``entries``  8-byte big-endian index -> the encoded :class:`~protocol.raft.Entry`

(encodings: :mod:`protocol.raft.codec`, one version byte then msgpack).

:meth:`RaftStorage.save` persists one ``Ready`` the way ``protocol/raft/ready.py``
requires, in **one** write transaction: the snapshot first (it replaces the whole
durable log), then the entries (deleting every durable entry from the first new
index on, then appending), then the hard state.  The commit returns only once the
data is on disk, so the shell may send the ``Ready``'s messages — the votes and
acknowledgements that promise this state — only after ``save`` returned.

Durability: opened like the audit log (:mod:`vramancer_node.audit.store`):
``sync=True`` and ``metasync=True`` (a commit is an ``fsync``), never ``writemap``
(a stray write through the map could corrupt committed pages), one writer.  The
store is *thread-confined*: every method runs on one
:class:`~vramancer_node.audit.writer.WriterThread` (LMDB allows one write
transaction at a time, and an ``fsync`` must not stall the trio loop).  A crash
leaves exactly the last committed transaction; :meth:`load` hands it back as a
:class:`~protocol.raft.PersistentState`, and the core checks it.

Map growth: a write that does not fit aborts, the map doubles (up to
:data:`MAP_SIZE_BYTES_MAX`) and the whole transaction is retried.

Error handling
--------------
Anything LMDB or the decoders refuse becomes :class:`ConsensusStoreError` naming the
directory: the node cannot take part in consensus with a store it cannot trust, and
says so instead of guessing.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import lmdb

from protocol.errors import RemoteProtocolError
from protocol.raft import Entry, HardState, PersistentState, Snapshot
from protocol.raft.codec import (
    decode_entry,
    decode_hard_state,
    decode_snapshot,
    encode_entry,
    encode_hard_state,
    encode_snapshot,
)
from protocol.raft.entries import EMPTY_SNAPSHOT
from vramancer_node.logs import get_logger

log = get_logger("consensus.store")

CONSENSUS_DIR_NAME = "consensus"
CONSENSUS_DIR_MODE = 0o700
ENV_FILE_MODE = 0o600
FORMAT_VERSION = b"1"
MAP_SIZE_BYTES_INITIAL = 16 * 1024 * 1024
"""Room for tens of thousands of control entries before the first growth."""
MAP_SIZE_BYTES_MAX = 1 << 36
"""64 GiB of address space (LMDB maps sparsely); the control log stays far below."""

_KEY = struct.Struct(">Q")
_META_HARD = b"hard"
_META_SNAPSHOT = b"snapshot"
_META_APPLIED = b"applied"
_META_FORMAT = b"format"
_T = TypeVar("_T")


class ConsensusStoreError(Exception):
    """The consensus store cannot be opened, read or written."""


def consensus_dir(state_dir: Path) -> Path:
    return Path(state_dir) / CONSENSUS_DIR_NAME


def _key(index: int) -> bytes:
    return _KEY.pack(index)


class RaftStorage:
    """The durable Raft state of one node; every method on one thread (see above)."""

    def __init__(self, env: lmdb.Environment, directory: Path) -> None:
        self._env = env
        self._dir = directory
        self._meta = env.open_db(b"meta")
        self._entries = env.open_db(b"entries")
        self.commits_total = 0
        """Write transactions committed (each one an fsync)."""

    @classmethod
    def open(cls, state_dir: Path, map_size_bytes: int = MAP_SIZE_BYTES_INITIAL) -> RaftStorage:
        """Open (creating if needed) ``<state_dir>/consensus``."""
        directory = consensus_dir(state_dir)
        try:
            directory.mkdir(mode=CONSENSUS_DIR_MODE, exist_ok=True)
            env = lmdb.open(
                str(directory),
                map_size=map_size_bytes,
                subdir=True,
                max_dbs=2,
                sync=True,
                metasync=True,
                writemap=False,
                map_async=False,
                mode=ENV_FILE_MODE,
                create=True,
            )
        except (OSError, lmdb.Error) as exc:
            raise ConsensusStoreError(
                f"cannot open the consensus store in {directory}: {exc}"
            ) from exc
        try:
            store = cls(env, directory)
            store._write(store._initialise)
        except BaseException:
            env.close()
            raise
        return store

    def close(self) -> None:
        self._env.close()

    # -- reading ------------------------------------------------------------------

    def load(self) -> PersistentState | None:
        """What was persisted, or None for a node that never held Raft state."""
        try:
            with self._env.begin(buffers=False) as txn:
                hard = txn.get(_META_HARD, db=self._meta)
                if hard is None:
                    return None
                snapshot_data = txn.get(_META_SNAPSHOT, db=self._meta)
                snapshot = (
                    EMPTY_SNAPSHOT if snapshot_data is None else decode_snapshot(snapshot_data)
                )
                entries = tuple(
                    decode_entry(value) for _key_, value in txn.cursor(db=self._entries)
                )
                hard_state = decode_hard_state(hard)
        except (lmdb.Error, RemoteProtocolError) as exc:
            raise ConsensusStoreError(
                f"the consensus store in {self._dir} is unreadable: {exc}"
            ) from exc
        return PersistentState(hard_state=hard_state, snapshot=snapshot, entries=entries)

    def applied_index(self) -> int:
        """Index of the last entry whose side effects were recorded (0: none)."""
        with self._env.begin(buffers=False) as txn:
            value = txn.get(_META_APPLIED, db=self._meta)
        return 0 if value is None else int(_KEY.unpack(value)[0])

    # -- writing ------------------------------------------------------------------

    def save(
        self,
        *,
        snapshot: Snapshot | None = None,
        entries: Sequence[Entry] = (),
        hard_state: HardState | None = None,
    ) -> None:
        """Persist one ``Ready`` in order (snapshot, entries, hard state), durably."""
        if snapshot is None and not entries and hard_state is None:
            return

        def work(txn: lmdb.Transaction) -> None:
            if snapshot is not None:
                self._drop_all(txn)
                txn.put(_META_SNAPSHOT, encode_snapshot(snapshot), db=self._meta)
            if entries:
                self._drop_from(txn, entries[0].index)
                for entry in entries:
                    if not txn.put(
                        _key(entry.index), encode_entry(entry), db=self._entries, append=True
                    ):
                        raise ConsensusStoreError(f"entry {entry.index} is not past the last one")
            if hard_state is not None:
                txn.put(_META_HARD, encode_hard_state(hard_state), db=self._meta)

        self._write(work)

    def compact(self, snapshot: Snapshot) -> None:
        """Store a local snapshot, then drop the entries it covers (one transaction)."""

        def work(txn: lmdb.Transaction) -> None:
            txn.put(_META_SNAPSHOT, encode_snapshot(snapshot), db=self._meta)
            self._drop_through(txn, snapshot.index)

        self._write(work)

    def set_applied_index(self, index: int) -> None:
        """Remember that the side effects of entries up to ``index`` are done."""

        def work(txn: lmdb.Transaction) -> None:
            txn.put(_META_APPLIED, _key(index), db=self._meta)

        self._write(work)

    # -- internals ----------------------------------------------------------------

    def _initialise(self, txn: lmdb.Transaction) -> None:
        found = txn.get(_META_FORMAT, db=self._meta)
        if found is None:
            txn.put(_META_FORMAT, FORMAT_VERSION, db=self._meta)
        elif bytes(found) != FORMAT_VERSION:
            raise ConsensusStoreError(
                f"{self._dir} holds consensus store format {bytes(found)!r}; this node"
                f" speaks {FORMAT_VERSION!r}"
            )

    def _drop_all(self, txn: lmdb.Transaction) -> None:
        txn.drop(self._entries, delete=False)

    def _drop_from(self, txn: lmdb.Transaction, first: int) -> None:
        cursor = txn.cursor(db=self._entries)
        if cursor.set_range(_key(first)):
            while cursor.key():
                cursor.delete()  # moves to the next entry

    def _drop_through(self, txn: lmdb.Transaction, last: int) -> None:
        cursor = txn.cursor(db=self._entries)
        cursor.first()
        while cursor.key() and _KEY.unpack(cursor.key())[0] <= last:
            cursor.delete()

    def _write(self, work: Callable[[lmdb.Transaction], _T]) -> _T:
        while True:
            try:
                with self._env.begin(write=True, buffers=False) as txn:
                    result = work(txn)
                self.commits_total += 1
                return result
            except lmdb.MapFullError:
                self._grow_map()
            except lmdb.Error as exc:
                raise ConsensusStoreError(
                    f"writing the consensus store in {self._dir} failed: {exc}"
                ) from exc

    def _grow_map(self) -> None:
        current = self._env.info()["map_size"]
        if current >= MAP_SIZE_BYTES_MAX:
            raise ConsensusStoreError(f"the consensus map is full at {current} bytes")
        new_size = min(current * 2, MAP_SIZE_BYTES_MAX)
        self._env.set_mapsize(new_size)
        log.info("consensus map grown", extra={"map_size_bytes": new_size})
