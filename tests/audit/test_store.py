"""The LMDB audit store: layout, group commit, map growth, reopening, read-only opening."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from crypto.audit import (
    Ed25519NoteVerifier,
    decode_signed_record,
    open_checkpoint,
    record_hash,
)
from crypto.merkle import MemoryTree, append_nodes, leaf_hash
from tests.audit.helpers import entry, fill_store, make_identity, owner_of, raw_env
from vramancer_node.audit.errors import (
    StoreBusyError,
    StoreCorruptError,
    StoreFullError,
    StoreMismatchError,
    StoreMissingError,
)
from vramancer_node.audit.layout import (
    audit_dir,
    decode_key,
    encode_key,
    record_of_node,
    tree_nodes_for_size,
    tree_position,
)
from vramancer_node.audit.store import MAP_SIZE_BYTES_MIN, open_readonly, open_store
from vramancer_node.layout import LOCK_FILE_NAME


class _NullTree:
    def subtree_hash(self, level: int, index: int) -> bytes:
        return bytes(32)


def test_tree_positions_follow_creation_order() -> None:
    # Every node append_nodes creates gets the next position, so append=True holds.
    position = 0
    for size in range(300):
        for node in append_nodes(size, bytes(32), _NullTree()):
            assert tree_position(node.level, node.index) == position
            assert record_of_node(node.level, node.index) == size
            position += 1
        assert tree_nodes_for_size(size + 1) == position


def test_keys_are_8_byte_big_endian_and_sort_as_integers() -> None:
    values = [0, 1, 255, 256, 65_535, 1 << 40, (1 << 64) - 1]
    keys = [encode_key(v) for v in values]
    assert all(len(k) == 8 for k in keys)
    assert sorted(keys) == keys
    assert [decode_key(k) for k in keys] == values
    with pytest.raises(ValueError):
        encode_key(1 << 64)
    with pytest.raises(ValueError):
        decode_key(b"\x00" * 7)


def test_append_batch_stores_signed_chained_records_and_the_tree(state_dir: Path) -> None:
    identity = make_identity()
    store = open_store(state_dir, owner_of(identity))
    try:
        assert store.append_batch([entry(n) for n in range(5)]) == [0, 1, 2, 3, 4]
        assert store.append_batch([entry(n) for n in range(5, 13)]) == list(range(5, 13))
        assert store.commits_total == 2 and store.records_total == 13
        reference = MemoryTree()
        with store.reader.view() as view:
            assert view.size == 13
            previous = None
            for seq, data in view.records():
                record = decode_signed_record(data).record
                assert record.seq == seq
                assert record.node_id == identity.node_id
                assert record.body["keys"] == (f"key-{seq}",)
                if previous is not None:
                    assert record.prev_hash == record_hash(previous)
                previous = record
                reference.append(record_hash(record))
            assert view.tree_entries() == tree_nodes_for_size(13)
            for size in range(1, 14):
                assert view.subtree_hash(0, size - 1) == reference.leaf_hash(size - 1)
            assert previous is not None and store.head_hash == record_hash(previous)
    finally:
        store.close()


def test_environment_is_synchronous_and_never_writemap(state_dir: Path) -> None:
    store = open_store(state_dir, owner_of(make_identity()))
    try:
        flags = store._env.flags()
        assert flags["sync"] is True
        assert flags["metasync"] is True
        assert flags["writemap"] is False
        assert flags["map_async"] is False
    finally:
        store.close()
    assert oct(audit_dir(state_dir).stat().st_mode & 0o777) == oct(0o700)
    assert (audit_dir(state_dir) / "data.mdb").stat().st_mode & 0o077 == 0


def test_reopening_continues_the_chain(state_dir: Path) -> None:
    identity = make_identity()
    fill_store(state_dir, 10, identity=identity)
    store = open_store(state_dir, owner_of(identity))
    try:
        assert store.size == 10
        assert store.append_batch([entry(10)]) == [10]
        with store.reader.view() as view:
            tenth = decode_signed_record(view.record_bytes(9) or b"").record
            eleventh = decode_signed_record(view.record_bytes(10) or b"").record
        assert eleventh.prev_hash == record_hash(tenth)
    finally:
        store.close()


def test_another_node_cannot_open_the_log(state_dir: Path) -> None:
    fill_store(state_dir, 3, identity=make_identity(1))
    with pytest.raises(StoreMismatchError, match="belongs to"):
        open_store(state_dir, owner_of(make_identity(2)))
    with pytest.raises(StoreMismatchError):
        open_store(state_dir, owner_of(make_identity(1), cluster_id="othercluster"))


def test_a_store_with_a_damaged_tree_refuses_to_append(state_dir: Path) -> None:
    fill_store(state_dir, 9)
    with raw_env(state_dir) as (env, dbs), env.begin(write=True) as txn:
        txn.delete(encode_key(tree_nodes_for_size(9) - 1), db=dbs.tree)
    with pytest.raises(StoreCorruptError, match="audit verify"):
        open_store(state_dir, owner_of(make_identity()))


def test_map_grows_by_doubling_from_a_tiny_initial_map(state_dir: Path) -> None:
    store = open_store(
        state_dir, owner_of(make_identity()), map_size_bytes_initial=MAP_SIZE_BYTES_MIN
    )
    try:
        for start in range(0, 300, 50):
            store.append_batch([entry(n, padding=1000) for n in range(start, start + 50)])
        assert store.map_resizes_total >= 2
        assert store.map_size_bytes == MAP_SIZE_BYTES_MIN << store.map_resizes_total
        with store.reader.view() as view:
            assert view.size == 300
            assert view.tree_entries() == tree_nodes_for_size(300)
    finally:
        store.close()


def test_map_growth_stops_at_the_maximum(state_dir: Path) -> None:
    store = open_store(
        state_dir,
        owner_of(make_identity()),
        map_size_bytes_initial=MAP_SIZE_BYTES_MIN,
        map_size_bytes_max=2 * MAP_SIZE_BYTES_MIN,
    )
    try:
        with pytest.raises(StoreFullError):
            store.append_batch([entry(n, padding=2000) for n in range(200)])
        assert store.size == 0  # the failed batch left nothing behind
        assert store.append_batch([entry(0)]) == [0]
    finally:
        store.close()


def test_checkpoints_are_signed_and_only_written_when_the_tree_grew(state_dir: Path) -> None:
    identity = make_identity()
    owner = owner_of(identity)
    store = open_store(state_dir, owner)
    try:
        store.append_batch([entry(n) for n in range(6)])
        first, new = store.write_checkpoint()
        assert new and first.size == 6
        again, new = store.write_checkpoint()
        assert not new and again == first
        store.append_batch([entry(6)])
        second, new = store.write_checkpoint()
        assert new and second.size == 7
        verifier = Ed25519NoteVerifier(name=owner.origin, public_key=identity.public_key)
        opened = open_checkpoint(second.note, [verifier])
        with store.reader.view() as view:
            assert (
                opened.checkpoint.root_hash
                == MemoryTree(
                    record_hash(decode_signed_record(data).record) for _, data in view.records()
                ).root()
            )
            assert [c for c in view.checkpoint_sizes()] == [6, 7]
            assert view.latest_checkpoint() == second
    finally:
        store.close()


def test_leaf_hashes_are_record_hash_leaves(state_dir: Path) -> None:
    fill_store(state_dir, 4)
    with open_readonly(state_dir) as reader, reader.view() as view:
        for seq, data in view.records():
            digest = record_hash(decode_signed_record(data).record)
            assert view.subtree_hash(0, seq) == leaf_hash(digest)


def test_open_readonly_creates_and_writes_nothing(state_dir: Path) -> None:
    fill_store(state_dir, 5, checkpoint_at=[5])
    (audit_dir(state_dir) / "lock.mdb").unlink()
    before = _snapshot(state_dir)
    with open_readonly(state_dir) as reader, reader.view() as view:
        assert view.size == 5
        assert view.meta().node_id == make_identity().node_id
    assert _snapshot(state_dir) == before


def test_open_readonly_without_a_log(state_dir: Path) -> None:
    with pytest.raises(StoreMissingError, match="no audit log"):
        open_readonly(state_dir)
    assert list(state_dir.iterdir()) == []


def test_open_readonly_refuses_while_a_daemon_holds_the_state_dir(state_dir: Path) -> None:
    fill_store(state_dir, 2)
    fd = os.open(state_dir / LOCK_FILE_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"4242\n")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(StoreBusyError, match="pid 4242"):
            open_readonly(state_dir)
    finally:
        os.close(fd)
    with open_readonly(state_dir) as reader, reader.view() as view:  # daemon gone
        assert view.size == 2


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
    }
