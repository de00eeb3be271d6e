"""The Raft wire codec: round trips, strict decoding, pinned bytes, random input."""

from __future__ import annotations

import contextlib
import string

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import RemoteProtocolError
from protocol.raft.codec import (
    CODEC_VERSION,
    decode,
    decode_entry,
    decode_hard_state,
    decode_snapshot,
    encode,
    encode_entry,
    encode_hard_state,
    encode_snapshot,
)
from protocol.raft.conf import ConfChange, ConfChangeKind, ConfState
from protocol.raft.entries import Entry, EntryKind, HardState, Snapshot
from protocol.raft.messages import (
    Append,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    MessageType,
    RequestVote,
    TimeoutNow,
    VoteResponse,
)
from protocol.wire import COUNTER_MAX, NODE_ID_CHARS_MAX

PROPERTY = settings(max_examples=200, derandomize=True, deadline=None)

node_ids = st.text(alphabet=string.ascii_lowercase + "234567", min_size=1, max_size=26)
counters = st.integers(0, COUNTER_MAX)
small = st.integers(0, 1000)
conf_changes = st.builds(ConfChange, kind=st.sampled_from(ConfChangeKind), node_id=node_ids)


@st.composite
def confs(draw: st.DrawFn) -> ConfState:
    voters = draw(st.frozensets(node_ids, min_size=1, max_size=7))
    learners = draw(st.frozensets(node_ids, max_size=5)) - voters
    return ConfState(voters=voters, learners=learners)


@st.composite
def snapshots(draw: st.DrawFn, term_max: int = COUNTER_MAX) -> Snapshot:
    return Snapshot(
        index=draw(st.integers(1, COUNTER_MAX)),
        term=draw(st.integers(0, term_max)),
        conf=draw(confs()),
        data=draw(st.binary(max_size=200)),
    )


@st.composite
def entry_runs(draw: st.DrawFn, first: int, term_min: int, term_max: int) -> tuple[Entry, ...]:
    entries = []
    term = term_min
    for index in range(first, first + draw(st.integers(0, 6))):
        term = draw(st.integers(term, term_max))
        if draw(st.booleans()):
            kind, data = EntryKind.CONF_CHANGE, draw(conf_changes).to_bytes()
        else:
            kind, data = EntryKind.NORMAL, draw(st.binary(max_size=64))
        entries.append(Entry(index=index, term=term, kind=kind, data=data))
    return tuple(entries)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    sender = draw(node_ids)
    head = {
        "term": draw(st.integers(0, COUNTER_MAX)),
        "from_id": sender,
        "to_id": draw(node_ids.filter(lambda n: n != sender)),
    }
    term = head["term"]
    assert isinstance(term, int)
    kind = draw(st.sampled_from(MessageType))
    if kind is MessageType.APPEND:
        prev_index = draw(st.integers(0, COUNTER_MAX - 10))
        prev_term = draw(st.integers(0, term))
        return Append(
            **head,  # type: ignore[arg-type]
            prev_index=prev_index,
            prev_term=prev_term,
            entries=draw(entry_runs(prev_index + 1, prev_term, term)),
            commit=draw(counters),
        )
    if kind is MessageType.APPEND_RESPONSE:
        return AppendResponse(
            **head,  # type: ignore[arg-type]
            index=draw(counters),
            reject=draw(st.booleans()),
            reject_hint=draw(counters),
            hint_term=draw(counters),
        )
    if kind is MessageType.HEARTBEAT:
        return Heartbeat(**head, commit=draw(counters))  # type: ignore[arg-type]
    if kind is MessageType.HEARTBEAT_RESPONSE:
        return HeartbeatResponse(**head)  # type: ignore[arg-type]
    if kind is MessageType.REQUEST_VOTE:
        return RequestVote(
            **head,  # type: ignore[arg-type]
            last_index=draw(counters),
            last_term=draw(st.integers(0, term)),
            pre_vote=draw(st.booleans()),
            transfer=draw(st.booleans()),
        )
    if kind is MessageType.VOTE_RESPONSE:
        return VoteResponse(
            **head,  # type: ignore[arg-type]
            pre_vote=draw(st.booleans()),
            granted=draw(st.booleans()),
        )
    if kind is MessageType.INSTALL_SNAPSHOT:
        return InstallSnapshot(**head, snapshot=draw(snapshots(term)))  # type: ignore[arg-type]
    return TimeoutNow(**head)  # type: ignore[arg-type]


@PROPERTY
@given(messages())
def test_every_message_survives_a_round_trip(message: Message) -> None:
    assert decode(encode(message)) == message


@PROPERTY
@given(messages())
def test_every_truncation_of_a_message_is_refused_as_the_peers_fault(message: Message) -> None:
    data = encode(message)
    for end in range(len(data)):
        with pytest.raises(RemoteProtocolError):
            decode(data[:end])
    with pytest.raises(RemoteProtocolError):
        decode(data + b"\x00")  # trailing bytes


@PROPERTY
@given(st.binary(max_size=300))
def test_random_bytes_decode_to_a_message_or_raise_remote_protocol_error(data: bytes) -> None:
    for candidate in (data, bytes((CODEC_VERSION,)) + data):
        with contextlib.suppress(RemoteProtocolError):
            decode(candidate)


wire_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda children: st.lists(children, max_size=9),
    max_leaves=30,
)


@PROPERTY
@given(st.integers(1, 8), wire_values)
def test_random_msgpack_arrays_decode_or_raise_remote_protocol_error(
    kind: int, tail: object
) -> None:
    fields = [kind, *(tail if isinstance(tail, list) else [tail])]
    with contextlib.suppress(RemoteProtocolError):
        decode(bytes((CODEC_VERSION,)) + msgpack.packb(fields, use_bin_type=True))


def test_wire_format_is_pinned() -> None:
    heartbeat = Heartbeat(term=3, from_id="a", to_id="b", commit=7)
    assert encode(heartbeat) == bytes.fromhex("01950303a161a16207")
    append = Append(
        term=2,
        from_id="a",
        to_id="b",
        prev_index=1,
        prev_term=1,
        entries=(Entry(index=2, term=2, kind=EntryKind.NORMAL, data=b"x"),),
        commit=1,
    )
    assert encode(append) == bytes.fromhex("01980102a161a16201019194020201c4017801")


def test_message_type_numbers_are_append_only() -> None:
    assert {t.name: t.value for t in MessageType} == {
        "APPEND": 1,
        "APPEND_RESPONSE": 2,
        "HEARTBEAT": 3,
        "HEARTBEAT_RESPONSE": 4,
        "REQUEST_VOTE": 5,
        "VOTE_RESPONSE": 6,
        "INSTALL_SNAPSHOT": 7,
        "TIMEOUT_NOW": 8,
    }
    assert {k.name: k.value for k in EntryKind} == {"NORMAL": 1, "CONF_CHANGE": 2}
    assert {k.name: k.value for k in ConfChangeKind} == {
        "ADD_VOTER": 1,
        "ADD_LEARNER": 2,
        "REMOVE_NODE": 3,
    }


def _wire(*fields: object) -> bytes:
    packed: bytes = msgpack.packb(list(fields), use_bin_type=True)
    return bytes((CODEC_VERSION,)) + packed


CONF_CHANGE = ConfChange(kind=ConfChangeKind.ADD_VOTER, node_id="c").to_bytes()
MALFORMED = {
    "empty": b"",
    "other codec version": bytes((2,))
    + encode(HeartbeatResponse(term=1, from_id="a", to_id="b"))[1:],
    "not an array": _wire()[:1] + msgpack.packb({"type": 3}),
    "empty array": _wire(),
    "unknown type": _wire(99, 1, "a", "b"),
    "bool as type": _wire(True, 1, "a", "b"),
    "too few fields": _wire(3, 1, "a", "b"),
    "too many fields": _wire(4, 1, "a", "b", 0),
    "negative term": _wire(4, -1, "a", "b"),
    "term too large": _wire(4, 2**63, "a", "b"),
    "bool as term": _wire(4, True, "a", "b"),
    "float as term": _wire(4, 1.0, "a", "b"),
    "empty node id": _wire(4, 1, "", "b"),
    "node id too long": _wire(4, 1, "a" * (NODE_ID_CHARS_MAX + 1), "b"),
    "bytes as node id": _wire(4, 1, b"a", "b"),
    "message to itself": _wire(4, 1, "a", "a"),
    "int as bool": _wire(6, 1, "a", "b", 1, 0),
    "str as entry data": _wire(1, 2, "a", "b", 1, 1, [[2, 2, 1, "x"]], 1),
    "gap in entries": _wire(1, 2, "a", "b", 1, 1, [[3, 2, 1, b"x"]], 1),
    "entry term above message term": _wire(1, 2, "a", "b", 1, 1, [[2, 3, 1, b"x"]], 1),
    "decreasing entry terms": _wire(1, 3, "a", "b", 1, 1, [[2, 3, 1, b""], [3, 2, 1, b""]], 1),
    "prev term above message term": _wire(1, 2, "a", "b", 1, 3, [], 1),
    "unknown entry kind": _wire(1, 2, "a", "b", 1, 1, [[2, 2, 9, b""]], 1),
    "garbage conf change": _wire(1, 2, "a", "b", 1, 1, [[2, 2, 2, b"\xc1"]], 1),
    "unknown conf change": _wire(1, 2, "a", "b", 1, 1, [[2, 2, 2, msgpack.packb([7, "c"])]], 1),
    "snapshot voter twice": _wire(7, 2, "a", "b", [2, 1, ["a", "a"], [], b""]),
    "snapshot voter and learner": _wire(7, 2, "a", "b", [2, 1, ["a"], ["a"], b""]),
    "snapshot without voters": _wire(7, 2, "a", "b", [2, 1, [], ["a"], b""]),
    "snapshot at index 0": _wire(7, 2, "a", "b", [0, 0, ["a"], [], b""]),
    "snapshot from a later term": _wire(7, 2, "a", "b", [2, 3, ["a"], [], b""]),
    "vote for a log from the future": _wire(5, 2, "a", "b", 1, 3, False, False),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_messages_are_refused_as_the_peers_fault(name: str) -> None:
    with pytest.raises(RemoteProtocolError):
        decode(MALFORMED[name])


def test_a_valid_conf_change_entry_decodes() -> None:
    message = decode(_wire(1, 2, "a", "b", 1, 1, [[2, 2, 2, CONF_CHANGE]], 1))
    assert isinstance(message, Append)
    assert ConfChange.from_bytes(message.entries[0].data).node_id == "c"


@PROPERTY
@given(
    st.builds(
        Entry,
        index=counters,
        term=counters,
        kind=st.just(EntryKind.NORMAL),
        data=st.binary(max_size=64),
    ),
    snapshots(),
    st.builds(HardState, term=counters, vote=st.none() | node_ids, commit=counters),
)
def test_storage_encodings_round_trip(entry: Entry, snapshot: Snapshot, hard: HardState) -> None:
    assert decode_entry(encode_entry(entry)) == entry
    assert decode_snapshot(encode_snapshot(snapshot)) == snapshot
    assert decode_hard_state(encode_hard_state(hard)) == hard


def test_conf_change_data_is_strict() -> None:
    change = ConfChange(kind=ConfChangeKind.REMOVE_NODE, node_id="n1")
    assert ConfChange.from_bytes(change.to_bytes()) == change
    for bad in (b"", msgpack.packb([3]), msgpack.packb([True, "n1"]), msgpack.packb([3, ""])):
        with pytest.raises(RemoteProtocolError):
            ConfChange.from_bytes(bad)
