"""Shared helpers of the audit tests: identities, filled stores, raw LMDB access."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lmdb

from crypto.audit import audit_origin
from crypto.identity import NodeIdentity, generate_identity
from vramancer_node.audit.kinds import CONFIG_CHANGED
from vramancer_node.audit.layout import DB_NAMES, audit_dir
from vramancer_node.audit.store import AppendEntry, LogOwner, open_readonly, open_store
from vramancer_node.audit.verify import VerifyReport, verify_log
from vramancer_node.audit.view import Databases

CLUSTER_ID = "testcluster"
TIME_MS_BASE = 1_700_000_000_000


def make_identity(number: int = 1) -> NodeIdentity:
    """A deterministic identity; different numbers give different nodes."""
    return generate_identity(bytes([number]) * 32)


def owner_of(identity: NodeIdentity, cluster_id: str = CLUSTER_ID) -> LogOwner:
    return LogOwner(
        node_id=identity.node_id,
        public_key=identity.public_key,
        origin=audit_origin(cluster_id, identity.node_id),
        seed=bytes(identity.signing_key),
    )


def entry(number: int, padding: int = 0) -> AppendEntry:
    """A record body that names its number (and optionally carries padding bytes)."""
    keys = [f"key-{number}"] + (["x" * padding] if padding else [])
    return AppendEntry(kind=CONFIG_CHANGED, body={"keys": keys}, time_ms=TIME_MS_BASE + number)


def fill_store(
    state_dir: Path,
    count: int,
    *,
    identity: NodeIdentity | None = None,
    checkpoint_at: Iterable[int] = (),
    batch: int = 7,
) -> None:
    """Create a store of ``count`` records, appended in batches, with checkpoints
    signed when the log reaches each size in ``checkpoint_at``."""
    store = open_store(state_dir, owner_of(identity or make_identity()))
    marks = sorted(set(checkpoint_at))
    try:
        while store.size < count:
            stop = min(count, store.size + batch, *(m for m in marks if m > store.size))
            store.append_batch([entry(n) for n in range(store.size, stop)])
            if store.size in marks:
                store.write_checkpoint()
    finally:
        store.close()


@contextmanager
def raw_env(state_dir: Path) -> Iterator[tuple[lmdb.Environment, Databases]]:
    """The store's LMDB environment opened writable, bypassing the store: for tampering."""
    env = lmdb.open(str(audit_dir(state_dir)), max_dbs=len(DB_NAMES), subdir=True)
    try:
        yield env, Databases.open(env, create=False)
    finally:
        env.close()


def stored(txn: lmdb.Transaction, key: bytes, db: Any) -> bytes:
    """The value under ``key``, which the test knows is there."""
    value = txn.get(key, db=db)
    assert value is not None, f"nothing stored under {key.hex()}"
    return bytes(value)


def verify_dir(state_dir: Path, public_key: bytes | None = None) -> VerifyReport:
    """Verify the log of ``state_dir`` through the read-only opener."""
    with open_readonly(state_dir) as reader, reader.view() as view:
        return verify_log(view, public_key=public_key)
