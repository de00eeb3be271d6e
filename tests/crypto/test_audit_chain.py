"""ChainVerifier: a good log verifies; every kind of tampering is caught at the right seq."""

from __future__ import annotations

import dataclasses

import pytest

from crypto.audit import (
    GENESIS_PREV_HASH,
    ChainError,
    ChainVerifier,
    Record,
    SignedRecord,
    _ed25519,
    encode_signed_record,
    record_hash,
    sign_record,
)
from crypto.merkle import MemoryTree

SEED = b"\x07" * 32
OTHER_SEED = b"\x08" * 32
PUBLIC_KEY = _ed25519.public_key(SEED)
NODE_ID = "nodeaaaaaaaaaaaaaaaaaaaaaa"
LOG_LENGTH = 30
BAD = 17


def make_log(length: int = LOG_LENGTH, seed: bytes = SEED) -> list[SignedRecord]:
    log: list[SignedRecord] = []
    prev_hash = GENESIS_PREV_HASH
    for seq in range(length):
        record = Record(
            seq=seq,
            prev_hash=prev_hash,
            time_ms=1_700_000_000_000 + 1000 * seq,
            node_id=NODE_ID,
            kind="test.event",
            body={"n": seq},
        )
        log.append(sign_record(record, seed))
        prev_hash = record_hash(record)
    return log


def feed_all(log: list[SignedRecord], verifier: ChainVerifier | None = None) -> ChainVerifier:
    verifier = verifier or ChainVerifier(public_key=PUBLIC_KEY, node_id=NODE_ID)
    for signed in log:
        verifier.feed(signed)
    return verifier


def expect_break(log: list[SignedRecord], seq: int, reason: str) -> ChainVerifier:
    verifier = ChainVerifier(public_key=PUBLIC_KEY, node_id=NODE_ID)
    with pytest.raises(ChainError) as info:
        feed_all(log, verifier)
    assert info.value.seq == seq
    assert reason in info.value.reason
    assert str(info.value).startswith(f"record {seq}: ")
    # Everything before the break verified.
    assert verifier.next_seq == seq
    return verifier


def test_good_log_verifies_and_yields_merkle_leaves() -> None:
    log = make_log()
    verifier = ChainVerifier(public_key=PUBLIC_KEY, node_id=NODE_ID)
    tree = MemoryTree()
    for signed in log:
        tree.append(verifier.feed(signed))
    assert verifier.next_seq == LOG_LENGTH
    assert verifier.head_hash == record_hash(log[-1].record)
    assert verifier.failure is None
    assert tree.size == LOG_LENGTH
    assert tree.leaf_hash(3) == MemoryTree([record_hash(s.record) for s in log]).leaf_hash(3)


def test_good_log_verifies_from_wire_bytes() -> None:
    verifier = ChainVerifier(public_key=PUBLIC_KEY)
    for signed in make_log():
        verifier.feed_bytes(encode_signed_record(signed))
    assert verifier.next_seq == LOG_LENGTH


def test_deleted_record() -> None:
    log = make_log()
    del log[BAD]
    expect_break(log, BAD, f"seq is {BAD + 1}, expected {BAD}")


def test_swapped_records() -> None:
    log = make_log()
    log[BAD], log[BAD + 1] = log[BAD + 1], log[BAD]
    expect_break(log, BAD, f"seq is {BAD + 1}, expected {BAD}")


def test_replayed_record() -> None:
    log = make_log()
    log.insert(BAD, log[BAD - 1])
    expect_break(log, BAD, f"seq is {BAD - 1}, expected {BAD}")


def test_wrong_key() -> None:
    expect_break(make_log(seed=OTHER_SEED), 0, "signature does not verify")


def test_record_changed_without_resigning() -> None:
    log = make_log()
    changed = dataclasses.replace(log[BAD].record, body={"n": 999})
    log[BAD] = SignedRecord(record=changed, signature=log[BAD].signature)
    expect_break(log, BAD, "signature does not verify")


def test_record_replaced_and_resigned_by_the_node_breaks_the_link() -> None:
    """The node itself rewrites record 16: its signature is valid, the chain is not."""
    log = make_log()
    rewritten = dataclasses.replace(log[BAD - 1].record, body={"n": -1})
    log[BAD - 1] = sign_record(rewritten, SEED)
    expect_break(log, BAD, f"prev_hash does not match record {BAD - 1}")


def test_forged_prev_hash_signed_by_the_node() -> None:
    log = make_log()
    forked = dataclasses.replace(log[BAD].record, prev_hash=b"\x42" * 32)
    log[BAD] = sign_record(forked, SEED)
    expect_break(log, BAD, f"prev_hash does not match record {BAD - 1}")


def test_foreign_node_id() -> None:
    log = make_log()
    foreign = dataclasses.replace(log[BAD].record, node_id="someone-else")
    log[BAD] = sign_record(foreign, SEED)
    expect_break(log, BAD, "node_id is 'someone-else'")


def test_failure_is_sticky() -> None:
    log = make_log()
    del log[BAD]
    verifier = expect_break(log, BAD, "seq")
    first = verifier.failure
    assert first is not None
    # Feeding the right record afterwards does not resume the chain.
    with pytest.raises(ChainError) as info:
        verifier.feed(make_log()[BAD])
    assert info.value is first
    with pytest.raises(ChainError):
        verifier.feed_bytes(b"")


@pytest.mark.parametrize("bit", [0, 7])
def test_every_flipped_byte_of_the_wire_form_is_caught_at_that_record(bit: int) -> None:
    log = make_log()
    data = encode_signed_record(log[BAD])
    for position in range(len(data)):
        tampered = bytearray(data)
        tampered[position] ^= 1 << bit
        verifier = ChainVerifier(
            public_key=PUBLIC_KEY,
            node_id=NODE_ID,
            next_seq=BAD,
            prev_hash=record_hash(log[BAD - 1].record),
        )
        with pytest.raises(ChainError) as info:
            verifier.feed_bytes(bytes(tampered))
        assert info.value.seq == BAD, position


def test_malformed_bytes_are_reported_with_the_position() -> None:
    verifier = ChainVerifier(public_key=PUBLIC_KEY)
    for signed in make_log(3):
        verifier.feed_bytes(encode_signed_record(signed))
    with pytest.raises(ChainError, match="record 3: malformed record") as info:
        verifier.feed_bytes(b"\x01garbage")
    assert info.value.seq == 3
    assert info.value.__cause__ is not None


def test_start_from_a_trusted_point() -> None:
    log = make_log()
    verifier = ChainVerifier(
        public_key=PUBLIC_KEY, next_seq=20, prev_hash=record_hash(log[19].record)
    )
    feed_all(log[20:], verifier)
    assert verifier.next_seq == LOG_LENGTH
    wrong_start = ChainVerifier(public_key=PUBLIC_KEY, next_seq=20, prev_hash=b"\x00" * 31 + b"1")
    with pytest.raises(ChainError, match="record 20: prev_hash does not match record 19"):
        wrong_start.feed(log[20])


def test_constructor_rejects_inconsistent_start() -> None:
    with pytest.raises(ValueError):
        ChainVerifier(public_key=PUBLIC_KEY[:31])
    with pytest.raises(ValueError):
        ChainVerifier(public_key=PUBLIC_KEY, prev_hash=b"\x01" * 32)
    with pytest.raises(ValueError):
        ChainVerifier(public_key=PUBLIC_KEY, next_seq=-1)
