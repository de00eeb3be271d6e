"""The audit service: the node's signed, hash-chained, checkpointed audit log.

Theory of operation
-------------------
One :class:`AuditService` per daemon, started in the daemon's nursery with
``await nursery.start(service.run)``.  It owns the LMDB store (:mod:`.store`) through a
dedicated writer thread (:mod:`.writer`) and three tasks:

* the **writer task** takes queued appends from a bounded memory channel, as many as
  are waiting (up to ``batch_records_max``), hands them to the writer thread as one
  batch — one transaction, one ``fsync`` (group commit) — and wakes each appender with
  its seq only once the batch is durable.  While a batch commits, new appends queue up
  and form the next batch, so the more concurrent the appenders, the fewer commits;
* the **checkpoint task** signs a C2SP checkpoint of the tree every
  ``checkpoint_every_records`` records or ``checkpoint_interval_s`` seconds, whichever
  comes first, and only if the tree grew;
* the **refused-handshake task** turns the refusals counted by
  :meth:`AuditService.note_refused_handshake` into at most a few records per
  ``refused_interval_s`` (:mod:`.refused`).

Reads (``tail``, ``proof``, ``verify``, ``records``) run on trio's worker threads in
read-only transactions, at most :data:`READERS_MAX` at a time.

Resource handling
-----------------
The append queue holds at most ``queue_records_max`` records; appenders wait when it
is full.  On shutdown the writer task finishes the batch in flight (its appenders get
their seq: it is durable), the tasks flush the refused-handshake counts and take a last
checkpoint within :data:`SHUTDOWN_FLUSH_S`, and the store is closed on its thread.

Error handling
--------------
A body that is not a canonical value of its kind's fields is the caller's bug:
``append`` raises ``ValueError`` (or :class:`crypto.audit.RecordFormatError`) at once,
and the record is never queued.  A failed write (disk full, I/O error, map at its
maximum) fails the batch's appenders with the error and then ends :meth:`run` with it:
an audit log that cannot write must not pretend to record.  Appends after the service
stopped raise :class:`~vramancer_node.audit.errors.AuditClosedError`.
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import outcome
import trio

from crypto.audit import GENESIS_PREV_HASH, Record, Value, audit_origin, encode_record
from crypto.identity import NodeIdentity
from crypto.merkle import consistency_proof
from vramancer_node.audit.cosign import Witness, witness_name
from vramancer_node.audit.documents import (
    checkpoint_document,
    export_header,
    proof_document,
    record_document,
    tail_document,
)
from vramancer_node.audit.errors import AuditClosedError
from vramancer_node.audit.kinds import check_body
from vramancer_node.audit.layout import WITNESS_STATE_FILE_NAME, audit_dir
from vramancer_node.audit.refused import RefusedHandshakes
from vramancer_node.audit.settings import AuditSettings
from vramancer_node.audit.store import (
    AppendEntry,
    AuditStore,
    LogOwner,
    open_store,
)
from vramancer_node.audit.verify import VerifyReport, verify_log
from vramancer_node.audit.view import LogView, StoredCheckpoint
from vramancer_node.audit.writer import WriterThread
from vramancer_node.logs import get_logger
from vramancer_node.metrics.histogram import Histogram

__all__ = ["READERS_MAX", "SHUTDOWN_FLUSH_S", "AuditService", "AuditSettings"]

log = get_logger("audit")

READERS_MAX = 4
"""Concurrent read transactions served to the API."""
SHUTDOWN_FLUSH_S = 5.0
"""Time allowed on shutdown for the last refused-handshake records and checkpoint."""

_T = TypeVar("_T")


class _PendingAppend:
    """One queued append and the appender waiting for its seq."""

    def __init__(self, entry: AppendEntry) -> None:
        self.entry = entry
        self._done = trio.Event()
        self._seq: int | None = None
        self._error: Exception | None = None

    def resolve(self, seq: int) -> None:
        if not self._done.is_set():
            self._seq = seq
            self._done.set()

    def fail(self, error: Exception) -> None:
        if not self._done.is_set():
            self._error = error
            self._done.set()

    async def wait_durable(self) -> int:
        await self._done.wait()
        if self._error is not None:
            # Each appender raises its own copy: one exception object raised in many
            # tasks would collect all their tracebacks.
            raise copy.copy(self._error) from self._error.__cause__
        assert self._seq is not None
        return self._seq


class AuditService:
    """The audit log of one node; see the module docstring."""

    def __init__(
        self,
        state_dir: Path,
        identity: NodeIdentity,
        origin_cluster_id: str,
        *,
        settings: AuditSettings | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.identity = identity
        self.cluster_id = origin_cluster_id
        self.origin = audit_origin(origin_cluster_id, identity.node_id)
        self.settings = settings or AuditSettings()
        self.wall_clock = wall_clock
        self._owner = LogOwner(
            node_id=identity.node_id,
            public_key=identity.public_key,
            origin=self.origin,
            seed=bytes(identity.signing_key),
        )
        self._send, self._receive = trio.open_memory_channel[_PendingAppend](
            self.settings.queue_records_max
        )
        self._writer = WriterThread(f"audit-writer-{identity.node_id[:8]}")
        self._store: AuditStore | None = None
        self._readers = trio.CapacityLimiter(READERS_MAX)
        self._refused = RefusedHandshakes()
        self._checkpointed_size = 0
        self._checkpoint_due = trio.Event()
        self._healthy = True
        self.commit_duration_s = Histogram()
        """Time of each group commit (one transaction, one fsync), for metrics."""
        self.verify_failures_total = 0
        """Verifications of the whole log that found it damaged, for metrics."""
        self.witness: Witness | None = None
        """This node's cosigner of peers' checkpoints, once :meth:`run` started."""

    # -- lifecycle --------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the store, serve until cancelled, then flush and close."""
        self._writer.start()
        try:
            opener = functools.partial(
                open_store,
                self.state_dir,
                self._owner,
                map_size_bytes_initial=self.settings.map_size_bytes_initial,
                map_size_bytes_max=self.settings.map_size_bytes_max,
            )
            store = self._store = await self._writer.run_sync(opener)
            self.witness = await trio.to_thread.run_sync(
                Witness.load,
                audit_dir(self.state_dir) / WITNESS_STATE_FILE_NAME,
                witness_name(self.origin),
                bytes(self.identity.signing_key),
            )
            latest = await self.latest_checkpoint()
            self._checkpointed_size = latest.size if latest else 0
            log.info("audit log open", extra={"origin": self.origin, "size": store.size})
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_loop)
                nursery.start_soon(self._checkpoint_loop)
                nursery.start_soon(self._refused_loop)
                task_status.started()
        finally:
            with trio.CancelScope(shield=True):
                await self._shut_down()

    async def _shut_down(self) -> None:
        self._send.close()  # later appends raise AuditClosedError
        queued: list[_PendingAppend] = []
        while True:
            try:
                queued.append(self._receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        self._receive.close()
        store = self._store
        if store is not None and self._healthy:
            with trio.move_on_after(SHUTDOWN_FLUSH_S):
                refused = [
                    _PendingAppend(self._entry(kind, body))
                    for kind, body in self._refused.drain(round(self.settings.refused_interval_s))
                ]
                batches = [*queued, *refused]
                size_max = self.settings.batch_records_max
                for start in range(0, len(batches), size_max):
                    await self._commit(store, batches[start : start + size_max])
                await self._writer.run_sync(store.write_checkpoint)
        for pending in queued:  # a no-op for those committed above
            pending.fail(AuditClosedError("the audit service stopped"))
        if store is not None:
            await self._writer.run_sync(store.close)
        await self._writer.stop()

    # -- appending -------------------------------------------------------------

    async def append(self, kind: str, body: Mapping[str, Value]) -> int:
        """Append a record of ``kind`` (:mod:`.kinds`); return its seq once durable."""
        pending = _PendingAppend(self._entry(kind, body))
        try:
            await self._send.send(pending)
        except (trio.ClosedResourceError, trio.BrokenResourceError) as exc:
            raise AuditClosedError("the audit service is not running") from exc
        return await pending.wait_durable()

    def note_refused_handshake(self, reason: str, address: str) -> None:
        """Count a refused handshake; recorded in aggregate every ``refused_interval_s``."""
        self._refused.note(reason, address)

    def _entry(self, kind: str, body: Mapping[str, Value]) -> AppendEntry:
        check_body(kind, body)
        time_ms = int(self.wall_clock() * 1000)
        # Build (and drop) the record now, so that a bad body fails its caller at once
        # instead of failing a whole batch on the writer thread.
        trial = Record(
            seq=0,
            prev_hash=GENESIS_PREV_HASH,
            time_ms=time_ms,
            node_id=self.identity.node_id,
            kind=kind,
            body=body,
        )
        encode_record(trial)
        return AppendEntry(kind=kind, body=trial.body, time_ms=time_ms)

    async def _write_loop(self) -> None:
        store = self._require_store()
        async for first in self._receive:
            batch = [first]
            while len(batch) < self.settings.batch_records_max:
                try:
                    batch.append(self._receive.receive_nowait())
                except trio.WouldBlock:
                    break
            await self._commit(store, batch)

    async def _commit(self, store: AuditStore, batch: list[_PendingAppend]) -> None:
        entries = [pending.entry for pending in batch]
        # Shielded: the appenders of a batch in flight learn whether it is durable.
        started_s = trio.current_time()
        with trio.CancelScope(shield=True):
            result = await outcome.acapture(self._writer.run_sync, store.append_batch, entries)
        self.commit_duration_s.observe(trio.current_time() - started_s)
        if isinstance(result, outcome.Error):
            self._healthy = False
            error = result.error
            for pending in batch:
                pending.fail(error if isinstance(error, Exception) else AuditClosedError())
            log.error("audit log write failed", extra={"detail": str(error)})
            result.unwrap()
        for pending, seq in zip(batch, result.unwrap(), strict=True):
            pending.resolve(seq)
        if store.size - self._checkpointed_size >= self.settings.checkpoint_every_records:
            self._checkpoint_due.set()

    # -- checkpoints -------------------------------------------------------------

    async def checkpoint(self) -> StoredCheckpoint:
        """Sign and store a checkpoint of the current tree (or return the latest one if
        the tree has not grown since)."""
        store = self._require_store()
        stored, _ = await self._writer.run_sync(store.write_checkpoint)
        self._checkpointed_size = max(self._checkpointed_size, stored.size)
        return stored

    async def latest_checkpoint(self) -> StoredCheckpoint | None:
        """Return the latest stored checkpoint, or ``None`` before the first."""
        return await self._read(lambda view: view.latest_checkpoint())

    async def _checkpoint_loop(self) -> None:
        while True:
            with trio.move_on_after(self.settings.checkpoint_interval_s):
                await self._checkpoint_due.wait()
            self._checkpoint_due = trio.Event()
            if self._require_store().size > self._checkpointed_size:
                await self.checkpoint()

    async def _refused_loop(self) -> None:
        while True:
            await trio.sleep(self.settings.refused_interval_s)
            await self._flush_refused()

    async def _flush_refused(self) -> None:
        interval_s = round(self.settings.refused_interval_s)
        batch = [_PendingAppend(self._entry(k, b)) for k, b in self._refused.drain(interval_s)]
        for pending in batch:  # queued together, so they share one commit
            await self._send.send(pending)
        for pending in batch:
            await pending.wait_durable()

    # -- reading -----------------------------------------------------------------

    async def tail(self, n: int) -> dict[str, Any]:
        """Return the ``vramancer.audit.tail.v1`` document of the last ``n`` records."""
        return await self._read(lambda view: tail_document(view, n))

    async def records(self, start: int, limit: int) -> list[dict[str, Any]]:
        """Return up to ``limit`` records from seq ``start``, as record documents."""

        def read(view: LogView) -> list[dict[str, Any]]:
            stop = min(view.size, start + limit)
            return [record_document(seq, data) for seq, data in view.records(start, stop)]

        return await self._read(read)

    async def proof(self, seq: int) -> dict[str, Any]:
        """Return the inclusion proof of record ``seq`` against the latest checkpoint
        (signing a new one first if the latest does not cover ``seq`` yet).  Raises
        ``LookupError`` if there is no record ``seq``."""
        size = self._require_store().size
        if not 0 <= seq < size:
            raise LookupError(f"no record {seq}: the log holds records 0 to {size - 1}")
        latest = await self.latest_checkpoint()
        if latest is None or latest.size <= seq:
            latest = await self.checkpoint()
        checkpoint = latest
        return await self._read(lambda view: proof_document(view, seq, checkpoint))

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """Return the RFC 6962 proof that the tree of ``old_size`` is a prefix of the
        tree of ``new_size`` (empty when there is nothing to prove)."""
        if old_size in (0, new_size):
            return []
        return await self._read(lambda view: consistency_proof(old_size, new_size, view))

    async def export_head(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Return an export's first line (whose log, how many records) and last line
        (the latest checkpoint, or ``None``), read together so the checkpoint never
        covers records beyond the exported size."""

        def read(view: LogView) -> tuple[dict[str, Any], dict[str, Any] | None]:
            latest = view.latest_checkpoint()
            header = export_header(view.meta(), view.size)
            return header, (checkpoint_document(latest) if latest is not None else None)

        return await self._read(read)

    async def verify(self) -> VerifyReport:
        """Verify the whole log (:func:`~vramancer_node.audit.verify.verify_log`)."""
        report = await self._read(verify_log)
        if not report.ok:
            self.verify_failures_total += 1
        return report

    async def add_cosignature(self, size: int, line: str, witness: str, vkey: str) -> None:
        """Store a verified cosignature line on our checkpoint of ``size``."""
        store = self._require_store()
        await self._writer.run_sync(store.add_cosignature, size, line, witness, vkey)

    async def cosigned_size(self, witness: str) -> int:
        """Return the largest of our tree sizes ``witness`` cosigned (0 if none)."""
        return await self._read(lambda view: view.meta().cosigned_sizes.get(witness, 0))

    def stats(self) -> dict[str, int]:
        """Counters and gauges for metrics."""
        store = self._store
        return {
            "records_total": store.records_total if store else 0,
            "commits_total": store.commits_total if store else 0,
            "map_resizes_total": store.map_resizes_total if store else 0,
            "map_size_bytes": store.map_size_bytes if store else 0,
            "size": store.size if store else 0,
            "queue_records": self._send.statistics().current_buffer_used,
            "queue_records_max": self.settings.queue_records_max,
            "refused_handshakes_total": self._refused.noted_total,
            "checkpointed_size": self._checkpointed_size,
            "verify_failures_total": self.verify_failures_total,
        }

    async def _read(self, read: Callable[[LogView], _T]) -> _T:
        store = self._require_store()

        def run() -> _T:
            with store.reader.view() as view:
                return read(view)

        return await trio.to_thread.run_sync(run, limiter=self._readers)

    def _require_store(self) -> AuditStore:
        if self._store is None:
            raise AuditClosedError("the audit service is not running")
        return self._store
