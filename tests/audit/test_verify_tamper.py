"""Tampering with a stored log is detected by verify, which names the bad record."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.audit import Checkpoint, Ed25519NoteSigner, sign_checkpoint
from tests.audit.helpers import (
    fill_store,
    make_identity,
    owner_of,
    raw_env,
    stored,
    verify_dir,
)
from vramancer_node.audit.layout import (
    META_PUBLIC_KEY,
    audit_dir,
    encode_key,
    tree_nodes_for_size,
    tree_position,
)

RECORDS = 40
CHECKPOINTS = (16, RECORDS)


@pytest.fixture(scope="module")
def pristine() -> Iterator[Path]:
    """One filled log, copied by each test that damages it."""
    path = Path(tempfile.mkdtemp(prefix="vrm-pristine-", dir="/tmp"))
    fill_store(path, RECORDS, checkpoint_at=CHECKPOINTS)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def copy_of(pristine: Path) -> Path:
    target = Path(tempfile.mkdtemp(prefix="vrm-tamper-", dir="/tmp"))
    shutil.copytree(audit_dir(pristine), audit_dir(target))
    return target


@pytest.fixture
def log_dir(pristine: Path) -> Iterator[Path]:
    path = copy_of(pristine)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def assert_names_record(state_dir: Path, seq: int, why: str) -> None:
    report = verify_dir(state_dir)
    assert not report.ok
    assert report.bad_seq == seq, report.reason
    assert report.reason is not None and report.reason.startswith(f"record {seq}: ")
    assert why in report.reason
    assert report.records == seq  # everything before it verified


def put_record(state_dir: Path, seq: int, data: bytes) -> None:
    with raw_env(state_dir) as (env, dbs), env.begin(write=True) as txn:
        txn.put(encode_key(seq), data, db=dbs.records)


def get_record(state_dir: Path, seq: int) -> bytes:
    with raw_env(state_dir) as (env, dbs), env.begin() as txn:
        return stored(txn, encode_key(seq), dbs.records)


def test_an_intact_log_verifies(log_dir: Path) -> None:
    report = verify_dir(log_dir, public_key=make_identity().public_key)
    assert report.ok, report.reason
    assert report.records == RECORDS
    assert report.checkpoints == len(CHECKPOINTS)
    assert report.checkpoint_size == RECORDS
    assert report.uncovered_records == 0
    assert report.to_json()["schema"] == "vramancer.audit.verify.v1"


@pytest.mark.parametrize("offset", [0, 1, 40, 65, 66, 90, -1])
def test_a_flipped_byte_in_a_record(log_dir: Path, offset: int) -> None:
    data = bytearray(get_record(log_dir, 7))
    data[offset] ^= 0x01
    put_record(log_dir, 7, bytes(data))
    assert_names_record(log_dir, 7, "")


@settings(max_examples=40, deadline=None)
@given(seq=st.integers(0, RECORDS - 1), position=st.floats(0, 1), mask=st.integers(1, 255))
def test_any_flipped_byte_of_any_record_is_named(
    pristine: Path, seq: int, position: float, mask: int
) -> None:
    state_dir = copy_of(pristine)
    try:
        data = bytearray(get_record(state_dir, seq))
        data[min(len(data) - 1, int(position * len(data)))] ^= mask
        put_record(state_dir, seq, bytes(data))
        assert_names_record(state_dir, seq, "")
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


def test_a_deleted_record(log_dir: Path) -> None:
    with raw_env(log_dir) as (env, dbs), env.begin(write=True) as txn:
        txn.delete(encode_key(7), db=dbs.records)
    assert_names_record(log_dir, 7, "missing")


def test_two_swapped_records(log_dir: Path) -> None:
    third, fourth = get_record(log_dir, 3), get_record(log_dir, 4)
    put_record(log_dir, 3, fourth)
    put_record(log_dir, 4, third)
    assert_names_record(log_dir, 3, "seq is 4, expected 3")


def test_a_record_replaced_by_a_copy_of_another(log_dir: Path) -> None:
    put_record(log_dir, 12, get_record(log_dir, 11))
    assert_names_record(log_dir, 12, "seq is 11")


def test_a_record_stored_under_another_key(log_dir: Path) -> None:
    last = get_record(log_dir, RECORDS - 1)
    with raw_env(log_dir) as (env, dbs), env.begin(write=True) as txn:
        txn.delete(encode_key(RECORDS - 1), db=dbs.records)
        txn.put(encode_key(RECORDS + 10), last, db=dbs.records)
    assert_names_record(log_dir, RECORDS - 1, f"the next stored key is {RECORDS + 10}")


def test_the_last_record_deleted_but_not_its_tree_nodes(log_dir: Path) -> None:
    # No checkpoint covers it any more: the tree's leftover nodes give it away.
    with raw_env(log_dir) as (env, dbs), env.begin(write=True) as txn:
        txn.delete(encode_key(RECORDS - 1), db=dbs.records)
        txn.delete(encode_key(RECORDS), db=dbs.checkpoints)
    assert_names_record(log_dir, RECORDS - 1, "yet the tree holds")


def test_trailing_records_and_their_tree_nodes_deleted(log_dir: Path) -> None:
    # A consistent truncation of records and tree; the checkpoint still covers them.
    with raw_env(log_dir) as (env, dbs), env.begin(write=True) as txn:
        for seq in range(30, RECORDS):
            txn.delete(encode_key(seq), db=dbs.records)
        for position in range(tree_nodes_for_size(30), tree_nodes_for_size(RECORDS)):
            txn.delete(encode_key(position), db=dbs.tree)
    assert_names_record(log_dir, 30, f"checkpoint {RECORDS} covers")


@pytest.mark.parametrize("first_lost", [39, 20, 1])
def test_a_truncated_tree(log_dir: Path, first_lost: int) -> None:
    with raw_env(log_dir) as (env, dbs), env.begin(write=True) as txn:
        for position in range(tree_nodes_for_size(first_lost), tree_nodes_for_size(RECORDS)):
            txn.delete(encode_key(position), db=dbs.tree)
    assert_names_record(log_dir, first_lost, "is missing")


@pytest.mark.parametrize(("level", "index", "creator"), [(0, 12, 12), (2, 3, 15), (3, 1, 15)])
def test_a_damaged_tree_node(log_dir: Path, level: int, index: int, creator: int) -> None:
    key = encode_key(tree_position(level, index))
    with raw_env(log_dir) as (env, dbs), env.begin(write=True) as txn:
        node = bytearray(stored(txn, key, dbs.tree))
        node[5] ^= 0x80
        txn.put(key, bytes(node), db=dbs.tree)
    assert_names_record(log_dir, creator, "does not match")


def edit_checkpoint(state_dir: Path, size: int, edit: object) -> None:
    with raw_env(state_dir) as (env, dbs), env.begin(write=True) as txn:
        note = stored(txn, encode_key(size), dbs.checkpoints).decode()
        txn.put(encode_key(size), edit(note).encode(), db=dbs.checkpoints)  # type: ignore[operator]


def _change_root(note: str) -> str:
    origin, size, root, rest = note.split("\n", 3)
    root = ("B" if root[0] == "A" else "A") + root[1:]
    return "\n".join([origin, size, root, rest])


def _change_size(note: str) -> str:
    origin, size, rest = note.split("\n", 2)
    return "\n".join([origin, str(int(size) - 1), rest])


def _drop_signature(note: str) -> str:
    text, _, _ = note.partition("\n\n")
    stranger = "A" * 94 + "=="  # a well-formed signature line by an unknown key
    return f"{text}\n\n\u2014 someone {stranger}\n"


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (_change_root, "does not verify"),
        (_change_size, "does not verify"),
        (_drop_signature, "no signature by a known key"),
        (lambda note: note.replace("\n\n", "\n"), "blank line"),
        (lambda note: note[:-3], "newline"),
    ],
)
def test_an_edited_checkpoint(log_dir: Path, edit: object, why: str) -> None:
    edit_checkpoint(log_dir, 16, edit)
    report = verify_dir(log_dir)
    assert not report.ok
    assert report.bad_checkpoint == 16 and report.bad_seq is None
    assert report.reason is not None and report.reason.startswith("checkpoint 16: ")
    assert why in report.reason


def test_a_signed_checkpoint_of_another_history(log_dir: Path) -> None:
    # What a node that forked its log would hold: its own valid signature, another root.
    owner = owner_of(make_identity())
    forged = Checkpoint(origin=owner.origin, size=16, root_hash=bytes(range(32)))
    signer = Ed25519NoteSigner(name=owner.origin, seed=owner.seed)
    edit_checkpoint(log_dir, 16, lambda _: sign_checkpoint(forged, [signer]))
    report = verify_dir(log_dir)
    assert report.bad_checkpoint == 16
    assert report.reason == "checkpoint 16: root hash does not match records 0-15"


def test_a_checkpoint_moved_to_another_size(log_dir: Path) -> None:
    with raw_env(log_dir) as (env, dbs), env.begin(write=True) as txn:
        old = stored(txn, encode_key(16), dbs.checkpoints)
        txn.put(encode_key(RECORDS), old, db=dbs.checkpoints)
    report = verify_dir(log_dir)
    assert report.bad_checkpoint == RECORDS
    assert "size 16" in (report.reason or "")


def test_a_replaced_public_key(log_dir: Path) -> None:
    with raw_env(log_dir) as (env, dbs), env.begin(write=True) as txn:
        txn.put(META_PUBLIC_KEY, make_identity(9).public_key, db=dbs.meta)
    report = verify_dir(log_dir)
    assert not report.ok and report.reason is not None
    assert report.reason.startswith("metadata: node id")


def test_a_log_rewritten_under_another_key_is_caught_by_the_node_key(state_dir: Path) -> None:
    # Self-consistent, but signed by someone else: only the node's own key tells.
    fill_store(state_dir, 5, identity=make_identity(9), checkpoint_at=[5])
    assert verify_dir(state_dir).ok
    report = verify_dir(state_dir, public_key=make_identity().public_key)
    assert not report.ok
    assert report.reason == "metadata: the log's public key is not the node's key"
