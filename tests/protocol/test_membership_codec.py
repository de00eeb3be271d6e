"""The membership wire codec: round trips, strict decoding, pinned bytes, limits."""

from __future__ import annotations

import contextlib
import string

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import RemoteProtocolError
from protocol.membership.codec import (
    CODEC_VERSION,
    COMPOUND_MESSAGES_MAX,
    COMPOUND_OVERHEAD_BYTES,
    DATAGRAM_PLAINTEXT_BYTES_MAX,
    MESSAGE_BYTES_MAX,
    decode,
    encode,
    encode_compound_parts,
    encode_part,
)
from protocol.membership.messages import (
    Ack,
    Alive,
    Compound,
    Dead,
    IndirectPing,
    Message,
    MessageType,
    Nack,
    Ping,
    PushPull,
    PushPullEntry,
    Suspect,
)
from protocol.membership.record import (
    ADDRESSES_MAX,
    COUNTER_MAX,
    DEVICE_KINDS,
    DEVICES_MAX,
    HEALTH_MAX,
    PEER_VALUES_MAX,
    ROLES_MAX,
    DeviceInfo,
    MemberRecord,
    peer_values,
)
from protocol.membership.state import MemberState

PROPERTY = settings(max_examples=150, derandomize=True, deadline=None)

node_ids = st.text(alphabet=string.ascii_lowercase + "234567", min_size=1, max_size=26)
texts = st.text(min_size=1, max_size=24)
addresses = st.builds(
    "{}:{}".format,
    st.from_regex(r"[a-z0-9.\-]{1,30}|\[[0-9a-f:]{2,20}\]", fullmatch=True),
    st.integers(1, 65_535),
)
counters = st.integers(0, COUNTER_MAX)
finite = st.floats(min_value=0.0, max_value=1e15, allow_nan=False, allow_infinity=False)


@st.composite
def devices(draw: st.DrawFn) -> DeviceInfo:
    total = draw(st.none() | counters)
    free = draw(st.none() | st.integers(0, COUNTER_MAX if total is None else total))
    return DeviceInfo(
        kind=draw(st.sampled_from(DEVICE_KINDS)),
        name=draw(texts),
        memory_total_bytes=total,
        memory_free_bytes=free,
        compute_tflops=draw(st.none() | finite),
    )


peer_maps = st.dictionaries(node_ids, finite, max_size=PEER_VALUES_MAX).map(peer_values)
records = st.builds(
    MemberRecord,
    node_id=node_ids,
    incarnation=counters,
    version=counters,
    addresses=st.lists(addresses, min_size=1, max_size=ADDRESSES_MAX, unique=True).map(tuple),
    roles=st.lists(texts, max_size=ROLES_MAX, unique=True).map(tuple),
    software_version=st.none() | texts,
    protocol_version=st.none() | st.integers(0, 65_535),
    devices=st.lists(devices(), max_size=DEVICES_MAX).map(tuple),
    rtt_ms=peer_maps,
    bandwidth_bytes_per_s=peer_maps,
    health=st.none() | st.integers(0, HEALTH_MAX),
    drain=st.booleans(),
)
seq_nos = st.integers(0, 2**32 - 1)
datagram_messages = st.one_of(
    st.builds(Ping, seq_no=seq_nos, target_id=node_ids, source_id=node_ids),
    st.builds(
        IndirectPing,
        seq_no=seq_nos,
        target_id=node_ids,
        target_addr=addresses,
        nack_after_ms=st.none() | st.integers(0, 600_000),
    ),
    st.builds(Ack, seq_no=seq_nos),
    st.builds(Nack, seq_no=seq_nos),
    st.builds(Suspect, node_id=node_ids, incarnation=counters, from_id=node_ids),
    st.builds(Dead, node_id=node_ids, incarnation=counters, from_id=node_ids),
    st.builds(Alive, record=records),
)
push_pulls = st.builds(
    PushPull,
    join=st.booleans(),
    reply=st.booleans(),
    members=st.lists(
        st.builds(PushPullEntry, record=records, state=st.sampled_from(MemberState)),
        max_size=4,
        unique_by=lambda entry: entry.record.node_id,
    ).map(tuple),
)
compounds = st.builds(
    Compound, messages=st.lists(datagram_messages, min_size=1, max_size=4).map(tuple)
)
messages = st.one_of(datagram_messages, push_pulls, compounds)


def wire(*fields: object) -> bytes:
    return bytes((CODEC_VERSION,)) + msgpack.packb(list(fields))


@PROPERTY
@given(messages)
def test_every_message_survives_a_round_trip(message: Message) -> None:
    assert decode(encode(message)) == message


@PROPERTY
@given(st.lists(datagram_messages, min_size=1, max_size=COMPOUND_MESSAGES_MAX))
def test_compounds_from_parts_decode_to_the_parts(parts: list[Message]) -> None:
    data = encode_compound_parts([encode_part(m) for m in parts])
    assert decode(data) == Compound(messages=tuple(parts))  # type: ignore[arg-type]
    overhead = len(data) - sum(len(encode_part(m)) for m in parts)
    assert overhead <= COMPOUND_OVERHEAD_BYTES


@PROPERTY
@given(st.binary(max_size=2048))
def test_random_bytes_only_ever_raise_remote_protocol_error(data: bytes) -> None:
    for candidate in (data, bytes((CODEC_VERSION,)) + data):
        with contextlib.suppress(RemoteProtocolError):
            decode(candidate)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text()
    | st.binary(max_size=8),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=30,
)


@PROPERTY
@given(st.integers(0, 12), st.lists(msgpack_values, max_size=13))
def test_well_formed_msgpack_of_the_wrong_shape_is_rejected_cleanly(
    message_type: int, fields: list[object]
) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode(wire(message_type, *fields))


@PROPERTY
@given(messages, st.data())
def test_corrupted_and_truncated_messages_only_raise_remote_protocol_error(
    message: Message, data: st.DataObject
) -> None:
    encoded = bytearray(encode(message))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(encoded) - 1))
        encoded[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(encoded)))
    for candidate in (bytes(encoded), bytes(encoded[:cut])):
        with contextlib.suppress(RemoteProtocolError):
            decode(candidate)


def test_every_strict_prefix_of_a_message_is_rejected() -> None:
    record = MemberRecord(node_id="a" * 26, addresses=("10.0.0.1:7733",), roles=("worker",))
    encoded = encode(
        Compound(messages=(Ping(seq_no=7, target_id="b", source_id="a"), Alive(record=record)))
    )
    for cut in range(len(encoded)):
        with pytest.raises(RemoteProtocolError):
            decode(encoded[:cut])
    assert decode(encoded) is not None


def test_the_wire_format_is_pinned() -> None:
    # version 1, fixarray(4), PING=1, seq 7, "b", "a"
    assert encode(Ping(seq_no=7, target_id="b", source_id="a")) == bytes.fromhex("01940107a162a161")
    assert encode(Ack(seq_no=300)) == bytes.fromhex("019203cd012c")
    record = MemberRecord(node_id="n", addresses=("h:1",))
    assert encode(Alive(record=record)) == bytes.fromhex(
        "0192069da16e000091a3683a3190c0c0909090c0c2c0"
    )


def test_message_type_numbers_are_append_only() -> None:
    assert {t.name: int(t) for t in MessageType} == {
        "PING": 1,
        "INDIRECT_PING": 2,
        "ACK": 3,
        "NACK": 4,
        "SUSPECT": 5,
        "ALIVE": 6,
        "DEAD": 7,
        "PUSH_PULL": 8,
        "COMPOUND": 9,
    }
    assert {s.name: int(s) for s in MemberState} == {"ALIVE": 0, "SUSPECT": 1, "DEAD": 2, "LEFT": 3}


def test_the_datagram_budget_leaves_room_for_the_seal() -> None:
    assert DATAGRAM_PLAINTEXT_BYTES_MAX == 1400 - 24 - 16


GOOD_RECORD = ["n", 0, 0, ["h:1"], [], None, None, [], [], [], None, False, None]


def record_with(index: int, value: object) -> list[object]:
    fields = list(GOOD_RECORD)
    fields[index] = value
    return fields


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        (b"", "codec version byte is missing"),
        (b"\x02\x92\x03\x01", "codec version 2 is not supported"),
        (b"\x01", "malformed msgpack"),
        (b"\x01\xc1", "malformed msgpack"),
        (wire(3, 1) + b"\x00", "malformed msgpack"),
        (bytes((1,)) + msgpack.packb({"type": 3}), "malformed msgpack"),
        (bytes((1,)) + msgpack.packb(3), "membership message: expected an array"),
        (wire(), "the type is missing"),
        (wire(99), "unknown membership message type 99"),
        (wire("ACK", 1), "membership message type: expected an int"),
        (wire(3), "ACK: expected an array of 2 items"),
        (wire(3, -1), r"ACK.seq_no: expected an int in \[0, 4294967295\]"),
        (wire(3, True), "ACK.seq_no: expected an int"),
        (wire(3, 2**32), "ACK.seq_no"),
        (wire(1, 1, "", "a"), "PING.target_id: expected a node id"),
        (wire(2, 1, "t", "no-port", None), "INDIRECT_PING.target_addr"),
        (wire(2, 1, "t", "h:1", -5), "INDIRECT_PING.nack_after_ms"),
        (wire(5, "n", 1.5, "a"), "SUSPECT.incarnation"),
        (wire(6, record_with(1, -1)), "ALIVE.record: incarnation must be an int"),
        (wire(6, record_with(3, [])), "ALIVE.record: addresses must name at least one"),
        (wire(6, record_with(3, ["h:0"])), r"addresses\[0\] must be HOST:PORT"),
        (wire(6, record_with(7, [["gpu", "x", 1, 1, None]])), r"devices\[0\]: kind must be one of"),
        (
            wire(6, record_with(7, [["cuda", "x", 1, 2, None]])),
            r"ALIVE.record.devices\[0\]: memory_free_bytes must not exceed",
        ),
        (
            wire(6, record_with(7, [["cuda", "x", 1, 1, 5]])),
            "compute_tflops must be a finite float",
        ),
        (wire(6, record_with(8, [["b", 1.0], ["a", 1.0]])), "rtt_ms must be sorted"),
        (wire(6, record_with(8, [["a", float("nan")]])), "rtt_ms.0. value must be a finite"),
        (wire(6, record_with(10, 64)), "health must be an int in"),
        (wire(6, record_with(11, 1)), "drain must be a bool"),
        (wire(6, GOOD_RECORD[:-1]), "ALIVE.record: expected an array of 13 items"),
        (wire(8, False, False, [[GOOD_RECORD, 0], [GOOD_RECORD, 1]]), "listed twice"),
        (wire(8, False, False, [[GOOD_RECORD, 4]]), r"members\[0\]: expected an int in \[0, 3\]"),
        (wire(8, 0, False, []), "PUSH_PULL.join: expected a bool"),
        (wire(9, []), "COMPOUND.messages: expected 1 to 64 messages"),
        (wire(9, [[9, [[3, 1]]]]), "COMPOUND may not contain COMPOUND"),
        (wire(9, [[8, False, False, []]]), "COMPOUND may not contain PUSH_PULL"),
        (wire(9, [[3, 1]] * 65), "COMPOUND.messages: expected 1 to 64"),
        (wire(6, record_with(0, "x" * 300)), "malformed msgpack"),
    ],
)
def test_malformed_input_is_rejected_with_a_specific_message(data: bytes, complaint: str) -> None:
    with pytest.raises(RemoteProtocolError, match=complaint):
        decode(data)


def test_oversized_input_is_rejected_before_parsing() -> None:
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        decode(bytes((CODEC_VERSION,)) + b"\x00" * MESSAGE_BYTES_MAX)
