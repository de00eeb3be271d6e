"""Audit records: canonical encoding, strict decoding, hashing, signed-record wire form."""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.audit import (
    GENESIS_PREV_HASH,
    RECORD_SIGNATURE_CONTEXT,
    SIGNED_RECORD_VERSION,
    Record,
    RecordFormatError,
    SignedRecord,
    _ed25519,
    decode_record,
    decode_signed_record,
    encode_record,
    encode_signed_record,
    record_hash,
    record_leaf_hash,
    sign_record,
    verify_record_signature,
)
from crypto.merkle import leaf_hash

SEED = bytes(range(32))
PROPERTY = settings(max_examples=200, deadline=None, derandomize=True)

# Written out by hand from the msgpack spec, not produced by the encoder under test:
# fixmap(6) with keys in sorted order, bin8 for bytes, uint64 for the time.
GOLDEN_RECORD = Record(
    seq=1,
    prev_hash=b"\x11" * 32,
    time_ms=1_700_000_000_000,
    node_id="n1",
    kind="k",
    body={"b": b"\x00", "a": [1, -1, None, True, "x"]},
)
GOLDEN_HEX = (
    "86"
    "a4626f6479" "82" "a161" "95" "01" "ff" "c0" "c3" "a178" "a162" "c40100"
    "a46b696e64" "a16b"
    "a76e6f64655f6964" "a26e31"
    "a9707265765f68617368" "c420" + "11" * 32 +
    "a3736571" "01"
    "a474696d65" "cf0000018bcfe56800"
)  # fmt: skip


def _record(**changes: Any) -> Record:
    fields: dict[str, Any] = {
        "seq": 0,
        "prev_hash": GENESIS_PREV_HASH,
        "time_ms": 1_700_000_000_000,
        "node_id": "node-a",
        "kind": "member.admitted",
        "body": {"serial": 7, "roles": ["admin"], "key": b"\x01\x02"},
    }
    fields.update(changes)
    return Record(**fields)


def _raw_map(**changes: Any) -> dict[str, Any]:
    """The plain wire map of the default record, with changes, for hand-made encodings."""
    raw: dict[str, Any] = {
        "body": {"key": b"\x01\x02", "roles": ["admin"], "serial": 7},
        "kind": "member.admitted",
        "node_id": "node-a",
        "prev_hash": GENESIS_PREV_HASH,
        "seq": 0,
        "time": 1_700_000_000_000,
    }
    raw.update(changes)
    return raw


def _pack(value: Any) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


# --- encoding --------------------------------------------------------------------------


def test_golden_encoding() -> None:
    assert encode_record(GOLDEN_RECORD).hex() == GOLDEN_HEX
    assert decode_record(bytes.fromhex(GOLDEN_HEX)) == GOLDEN_RECORD
    assert record_hash(GOLDEN_RECORD) == hashlib.sha256(bytes.fromhex(GOLDEN_HEX)).digest()


def test_key_order_of_the_input_does_not_matter() -> None:
    one = _record(body={"z": 1, "a": {"y": 2, "b": 3}})
    two = _record(body={"a": {"b": 3, "y": 2}, "z": 1})
    assert encode_record(one) == encode_record(two)
    assert record_hash(one) == record_hash(two)


def test_leaf_hash_is_the_rfc6962_leaf_of_the_record_hash() -> None:
    record = _record()
    assert record_leaf_hash(record) == leaf_hash(record_hash(record))


def test_record_is_frozen_including_its_body() -> None:
    body: dict[str, Any] = {"list": [1, 2], "map": {"k": "v"}}
    record = _record(body=body)
    body["list"].append(3)  # the caller's dict is copied, not aliased
    assert record.body["list"] == (1, 2)
    with pytest.raises(TypeError):
        record.body["new"] = 1  # type: ignore[index]
    with pytest.raises(AttributeError):
        record.seq = 5  # type: ignore[misc]


def test_enum_like_subclasses_are_encoded_as_their_base_type() -> None:
    class Flag(int):
        pass

    class Name(str):
        pass

    assert encode_record(_record(body={"n": Flag(3), "s": Name("x")})) == encode_record(
        _record(body={"n": 3, "s": "x"})
    )


# --- construction-time validation ------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"body": {"ratio": 0.5}}, "body.ratio"),
        ({"body": {"deep": [1, {"x": 1.0}]}}, "body.deep[1].x"),
        ({"body": {"big": 1 << 64}}, "body.big"),
        ({"body": {"small": -(1 << 63) - 1}}, "body.small"),
        ({"body": {1: "non-string key"}}, "body"),
        ({"body": {"set": {1, 2}}}, "body.set"),
        ({"body": {"buffer": bytearray(b"x")}}, "body.buffer"),
        ({"body": ["not", "a", "map"]}, "body"),
        ({"seq": -1}, "seq"),
        ({"seq": True}, "seq"),
        ({"seq": 1 << 63}, "seq"),
        ({"time_ms": 1.5}, "time"),
        ({"prev_hash": b"\x00" * 31}, "prev_hash"),
        ({"prev_hash": b"\x01" * 32}, "prev_hash"),  # seq 0 must chain from genesis
        ({"node_id": ""}, "node_id"),
        ({"node_id": "a\nb"}, "node_id"),
        ({"kind": "k" * 65}, "kind"),
    ],
)
def test_invalid_values_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(RecordFormatError) as info:
        _record(**changes)
    assert info.value.field == field


def test_floats_are_refused_with_a_clear_message() -> None:
    with pytest.raises(RecordFormatError, match="floats are not allowed"):
        _record(body={"load": 0.75})


def test_nesting_is_bounded() -> None:
    body: dict[str, Any] = {"x": 0}
    for _ in range(20):
        body = {"x": body}
    with pytest.raises(RecordFormatError, match="nested deeper"):
        _record(body=body)


# --- strict decoding -------------------------------------------------------------------


def test_decode_roundtrip_of_hand_made_canonical_bytes() -> None:
    assert decode_record(_pack(_raw_map())) == _record()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (_pack({**_raw_map(), "extra": 1}), "extra"),
        (_pack({k: v for k, v in _raw_map().items() if k != "kind"}), "kind"),
        (_pack(_raw_map(seq="0")), "seq"),
        (_pack(_raw_map(seq=False)), "seq"),
        (_pack(_raw_map(prev_hash="0" * 32)), "prev_hash"),  # str where bin is due
        (_pack(_raw_map(time=1.0)), "time"),
        (_pack(_raw_map(body=[1])), "body"),
        (_pack(_raw_map(body={"f": 1.0})), "body.f"),
        (_pack(_raw_map(node_id=b"node-a")), "node_id"),
        (_pack([1, 2, 3]), "record"),
        (_pack(_raw_map()) + b"\x00", "record"),  # trailing byte
        (_pack(_raw_map())[:-1], "record"),  # truncated
        (b"", "record"),
        (b"\xc1", "record"),  # never-used msgpack byte
    ],
)
def test_decode_rejects_malformed_input_naming_the_field(data: bytes, field: str) -> None:
    with pytest.raises(RecordFormatError) as info:
        decode_record(data)
    assert info.value.field == field


def test_decode_rejects_unsorted_keys() -> None:
    unsorted = dict(reversed(list(_raw_map().items())))
    with pytest.raises(RecordFormatError, match="canonical"):
        decode_record(_pack(unsorted))
    body_unsorted = _raw_map(body={"serial": 7, "roles": ["admin"], "key": b"\x01\x02"})
    with pytest.raises(RecordFormatError, match="canonical"):
        decode_record(_pack(body_unsorted))


def test_decode_rejects_long_forms_and_duplicate_keys() -> None:
    canonical = _pack(_raw_map())
    # seq 0 as uint8 (0xcc 0x00) instead of the positive fixint 0x00.
    long_form = canonical.replace(b"\xa3seq\x00", b"\xa3seq\xcc\x00")
    assert long_form != canonical
    with pytest.raises(RecordFormatError, match="canonical"):
        decode_record(long_form)
    # The same key twice: a map of 7 entries where "seq" repeats.
    duplicated = b"\x87" + canonical[1:] + b"\xa3seq\x00"
    with pytest.raises(RecordFormatError, match="canonical"):
        decode_record(duplicated)


def test_decode_rejects_extension_types() -> None:
    ext = msgpack.ExtType(5, b"x")
    with pytest.raises(RecordFormatError):
        decode_record(_pack(_raw_map(body={"e": ext})))
    timestamp = msgpack.Timestamp(1, 0)
    with pytest.raises(RecordFormatError):
        decode_record(_pack(_raw_map(body={"t": timestamp})))


# --- properties ------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
bodies = st.dictionaries(st.text(max_size=8), values, max_size=6)


@PROPERTY
@given(
    body=bodies,
    seq=st.integers(min_value=1, max_value=(1 << 63) - 1),
    prev_hash=st.binary(min_size=32, max_size=32),
)
def test_property_encoding_roundtrips_and_is_a_fixed_point(
    body: dict[str, Any], seq: int, prev_hash: bytes
) -> None:
    record = _record(body=body, seq=seq, prev_hash=prev_hash)
    data = encode_record(record)
    decoded = decode_record(data)
    assert decoded == record
    assert encode_record(decoded) == data


@PROPERTY
@given(body=bodies, position=st.integers(min_value=0), bit=st.integers(0, 7))
def test_property_a_flipped_bit_never_decodes_to_the_same_hash(
    body: dict[str, Any], position: int, bit: int
) -> None:
    record = _record(body=body)
    data = bytearray(encode_record(record))
    data[position % len(data)] ^= 1 << bit
    try:
        other = decode_record(bytes(data))
    except RecordFormatError:
        return
    assert record_hash(other) != record_hash(record)


# --- signed records --------------------------------------------------------------------


def test_signature_covers_the_context_and_the_record_hash() -> None:
    record = _record()
    signed = sign_record(record, SEED)
    public_key = _ed25519.public_key(SEED)
    assert verify_record_signature(signed, public_key)
    message = RECORD_SIGNATURE_CONTEXT + record_hash(record)
    assert _ed25519.verify(public_key, message, signed.signature)
    # A bare signature of the hash (no context) is not a record signature.
    bare = SignedRecord(record=record, signature=_ed25519.sign(SEED, record_hash(record)))
    assert not verify_record_signature(bare, public_key)
    assert not verify_record_signature(signed, _ed25519.public_key(bytes(32)))


def test_signed_record_wire_form() -> None:
    signed = sign_record(_record(), SEED)
    data = encode_signed_record(signed)
    assert data[0] == SIGNED_RECORD_VERSION
    assert data[1:65] == signed.signature
    assert data[65:] == encode_record(signed.record)
    assert decode_signed_record(data) == signed


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda data: b"", "version"),
        (lambda data: b"\x02" + data[1:], "version"),
        (lambda data: data[:65], "signature"),
        (lambda data: data[:40], "signature"),
        (lambda data: data + b"\x00", "record"),
    ],
)
def test_signed_record_wire_form_is_strict(mutate: Any, field: str) -> None:
    data = encode_signed_record(sign_record(_record(), SEED))
    with pytest.raises(RecordFormatError) as info:
        decode_signed_record(mutate(data))
    assert info.value.field == field


def test_signed_record_needs_a_64_byte_signature() -> None:
    with pytest.raises(RecordFormatError) as info:
        SignedRecord(record=_record(), signature=b"\x00" * 63)
    assert info.value.field == "signature"
