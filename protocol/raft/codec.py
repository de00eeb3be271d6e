"""Versioned msgpack wire format of the Raft messages (and of what the shell persists).

Theory of operation
-------------------
A message on the wire is one codec-version byte followed by one msgpack array::

    [CODEC_VERSION] msgpack([type, term, from_id, to_id, field, ...])

``type`` is a :class:`~protocol.raft.messages.MessageType` (append only); the fields
follow in this positional order::

    APPEND              [1, term, from, to, prev_index, prev_term, [entry...], commit]
    APPEND_RESPONSE     [2, term, from, to, index, reject, reject_hint, hint_term]
    HEARTBEAT           [3, term, from, to, commit]
    HEARTBEAT_RESPONSE  [4, term, from, to]
    REQUEST_VOTE        [5, term, from, to, last_index, last_term, pre_vote, transfer]
    VOTE_RESPONSE       [6, term, from, to, pre_vote, granted]
    INSTALL_SNAPSHOT    [7, term, from, to, snapshot]
    TIMEOUT_NOW         [8, term, from, to]

    entry     [index, term, kind, data]             data: msgpack bin
    snapshot  [index, term, [voter...], [learner...], data]

Decoding is strict: exact arity, exact types (a bool is not an int, a str is not
bin), every integer in [0, 2**63 - 1], every size under a named limit, and then the
cross-field rules of :func:`~protocol.raft.messages.check_message` (contiguous
entries, terms in order, valid conf changes).  Anything else raises
:class:`~protocol.errors.RemoteProtocolError`; nothing else escapes :func:`decode`.

Raft messages travel over the secure stream (never datagrams): an append or a
snapshot can be large.  :data:`MESSAGE_BYTES_MAX` bounds what a peer can make us
buffer.

For the shell's store the same encodings are exposed for single values:
:func:`encode_entry`, :func:`encode_hard_state`, :func:`encode_snapshot` and their
decoders (one version byte, then the msgpack array).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from protocol.errors import RemoteProtocolError
from protocol.raft.conf import ConfChange, ConfState
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
    check_message,
)
from protocol.wire import NODE_ID_CHARS_MAX
from protocol.wire import array as _array
from protocol.wire import boolean as _bool
from protocol.wire import fail as _fail
from protocol.wire import node_id as _node_id
from protocol.wire import uint as _int

CODEC_VERSION = 1
"""First byte of every encoding; bump on any incompatible change."""
SNAPSHOT_BYTES_MAX = 256 * 1024 * 1024
"""Largest snapshot data (the replicated state is metadata, far below this)."""
APPEND_ENTRIES_WIRE_MAX = 10_000
"""Entries in one append (the largest ``RaftConfig.append_entries_max``)."""
CONF_MEMBERS_MAX = 4096
"""Voters or learners in one configuration (the largest membership push-pull)."""
MESSAGE_BYTES_MAX = SNAPSHOT_BYTES_MAX + 1024 * 1024
"""Largest message accepted at all: a snapshot plus its envelope."""
_ARRAY_ITEMS_MAX = max(APPEND_ENTRIES_WIRE_MAX, CONF_MEMBERS_MAX)
_STR_BYTES_MAX = NODE_ID_CHARS_MAX * 4  # utf-8


# ------------------------------------------------------------------ encoding


def _entry_to_wire(entry: Entry) -> list[Any]:
    return [entry.index, entry.term, int(entry.kind), entry.data]


def _snapshot_to_wire(snapshot: Snapshot) -> list[Any]:
    return [
        snapshot.index,
        snapshot.term,
        sorted(snapshot.conf.voters),
        sorted(snapshot.conf.learners),
        snapshot.data,
    ]


def _to_wire(message: Message) -> list[Any]:
    head = [message.term, message.from_id, message.to_id]
    match message:
        case Append():
            entries = [_entry_to_wire(e) for e in message.entries]
            tail = [message.prev_index, message.prev_term, entries, message.commit]
            return [MessageType.APPEND, *head, *tail]
        case AppendResponse():
            tail = [message.index, message.reject, message.reject_hint, message.hint_term]
            return [MessageType.APPEND_RESPONSE, *head, *tail]
        case Heartbeat():
            return [MessageType.HEARTBEAT, *head, message.commit]
        case HeartbeatResponse():
            return [MessageType.HEARTBEAT_RESPONSE, *head]
        case RequestVote():
            tail = [message.last_index, message.last_term, message.pre_vote, message.transfer]
            return [MessageType.REQUEST_VOTE, *head, *tail]
        case VoteResponse():
            return [MessageType.VOTE_RESPONSE, *head, message.pre_vote, message.granted]
        case InstallSnapshot():
            return [MessageType.INSTALL_SNAPSHOT, *head, _snapshot_to_wire(message.snapshot)]
        case TimeoutNow():
            return [MessageType.TIMEOUT_NOW, *head]
    raise TypeError(f"not a Raft message: {message!r}")


def _pack(wire: list[Any]) -> bytes:
    packed: bytes = msgpack.packb(wire, use_bin_type=True)
    return bytes((CODEC_VERSION,)) + packed


def encode(message: Message) -> bytes:
    """The wire form of ``message``: version byte, then the msgpack array."""
    return _pack(_to_wire(message))


def encode_entry(entry: Entry) -> bytes:
    """One log entry, for the shell's store."""
    return _pack(_entry_to_wire(entry))


def encode_snapshot(snapshot: Snapshot) -> bytes:
    """A snapshot, for the shell's store."""
    return _pack(_snapshot_to_wire(snapshot))


def encode_hard_state(hard_state: HardState) -> bytes:
    """Term, vote, commit, for the shell's store."""
    return _pack([hard_state.term, hard_state.vote, hard_state.commit])


# ------------------------------------------------------------------ decoding


def _unpack(data: bytes, what: str) -> object:
    if not isinstance(data, bytes) or not data:
        raise RemoteProtocolError(f"empty Raft {what}: the codec version byte is missing")
    if len(data) > MESSAGE_BYTES_MAX:
        raise RemoteProtocolError(f"Raft {what} of {len(data)} bytes exceeds {MESSAGE_BYTES_MAX}")
    if data[0] != CODEC_VERSION:
        raise RemoteProtocolError(
            f"Raft codec version {data[0]} is not supported (this node speaks {CODEC_VERSION})"
        )
    try:
        return msgpack.unpackb(
            data[1:],
            use_list=False,
            raw=False,
            strict_map_key=True,
            max_str_len=_STR_BYTES_MAX,
            max_bin_len=SNAPSHOT_BYTES_MAX,
            max_array_len=_ARRAY_ITEMS_MAX,
            max_map_len=0,
            max_ext_len=0,
        )
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
        raise RemoteProtocolError(f"malformed msgpack in Raft {what}: {exc}") from exc


def _bytes(value: object, where: str) -> bytes:
    if not isinstance(value, bytes):
        raise _fail(where, "bin", value)
    return value


def _node_set(value: object, where: str) -> frozenset[str]:
    items = _array(value, where)
    if len(items) > CONF_MEMBERS_MAX:
        raise _fail(where, f"at most {CONF_MEMBERS_MAX} nodes", len(items))
    nodes = frozenset(_node_id(item, f"{where}[{i}]") for i, item in enumerate(items))
    if len(nodes) != len(items):
        raise RemoteProtocolError(f"{where}: a node is listed twice")
    return nodes


def _entry(value: object, where: str) -> Entry:
    fields = _array(value, where, 4)
    kind = _int(fields[2], f"{where}.kind")
    try:
        entry_kind = EntryKind(kind)
    except ValueError as exc:
        raise RemoteProtocolError(f"{where}.kind: unknown entry kind {kind}") from exc
    return Entry(
        index=_int(fields[0], f"{where}.index"),
        term=_int(fields[1], f"{where}.term"),
        kind=entry_kind,
        data=_bytes(fields[3], f"{where}.data"),
    )


def _snapshot(value: object, where: str) -> Snapshot:
    fields = _array(value, where, 5)
    voters = _node_set(fields[2], f"{where}.voters")
    learners = _node_set(fields[3], f"{where}.learners")
    try:
        conf = ConfState(voters=voters, learners=learners)
    except ValueError as exc:
        raise RemoteProtocolError(f"{where}: {exc}") from exc
    return Snapshot(
        index=_int(fields[0], f"{where}.index"),
        term=_int(fields[1], f"{where}.term"),
        conf=conf,
        data=_bytes(fields[4], f"{where}.data"),
    )


def _append(f: tuple[Any, ...], h: dict[str, Any]) -> Message:
    entries = _array(f[2], "APPEND.entries")
    if len(entries) > APPEND_ENTRIES_WIRE_MAX:
        raise _fail("APPEND.entries", f"at most {APPEND_ENTRIES_WIRE_MAX}", len(entries))
    return Append(
        **h,
        prev_index=_int(f[0], "APPEND.prev_index"),
        prev_term=_int(f[1], "APPEND.prev_term"),
        entries=tuple(_entry(e, f"APPEND.entries[{i}]") for i, e in enumerate(entries)),
        commit=_int(f[3], "APPEND.commit"),
    )


def _append_response(f: tuple[Any, ...], h: dict[str, Any]) -> Message:
    return AppendResponse(
        **h,
        index=_int(f[0], "APPEND_RESPONSE.index"),
        reject=_bool(f[1], "APPEND_RESPONSE.reject"),
        reject_hint=_int(f[2], "APPEND_RESPONSE.reject_hint"),
        hint_term=_int(f[3], "APPEND_RESPONSE.hint_term"),
    )


def _heartbeat(f: tuple[Any, ...], h: dict[str, Any]) -> Message:
    return Heartbeat(**h, commit=_int(f[0], "HEARTBEAT.commit"))


def _heartbeat_response(f: tuple[Any, ...], h: dict[str, Any]) -> Message:
    return HeartbeatResponse(**h)


def _request_vote(f: tuple[Any, ...], h: dict[str, Any]) -> Message:
    return RequestVote(
        **h,
        last_index=_int(f[0], "REQUEST_VOTE.last_index"),
        last_term=_int(f[1], "REQUEST_VOTE.last_term"),
        pre_vote=_bool(f[2], "REQUEST_VOTE.pre_vote"),
        transfer=_bool(f[3], "REQUEST_VOTE.transfer"),
    )


def _vote_response(f: tuple[Any, ...], h: dict[str, Any]) -> Message:
    return VoteResponse(
        **h,
        pre_vote=_bool(f[0], "VOTE_RESPONSE.pre_vote"),
        granted=_bool(f[1], "VOTE_RESPONSE.granted"),
    )


def _install_snapshot(f: tuple[Any, ...], h: dict[str, Any]) -> Message:
    return InstallSnapshot(**h, snapshot=_snapshot(f[0], "INSTALL_SNAPSHOT.snapshot"))


def _timeout_now(f: tuple[Any, ...], h: dict[str, Any]) -> Message:
    return TimeoutNow(**h)


_DECODERS: dict[MessageType, tuple[int, Callable[[tuple[Any, ...], dict[str, Any]], Message]]] = {
    MessageType.APPEND: (4, _append),
    MessageType.APPEND_RESPONSE: (4, _append_response),
    MessageType.HEARTBEAT: (1, _heartbeat),
    MessageType.HEARTBEAT_RESPONSE: (0, _heartbeat_response),
    MessageType.REQUEST_VOTE: (4, _request_vote),
    MessageType.VOTE_RESPONSE: (2, _vote_response),
    MessageType.INSTALL_SNAPSHOT: (1, _install_snapshot),
    MessageType.TIMEOUT_NOW: (0, _timeout_now),
}
"""type -> (number of fields after the common head, decoder)."""


def decode(data: bytes) -> Message:
    """Parse one message; raise ``RemoteProtocolError`` on anything malformed."""
    fields = _array(_unpack(data, "message"), "Raft message")
    if not fields:
        raise RemoteProtocolError("Raft message: empty array, the type is missing")
    raw_type = fields[0]
    if isinstance(raw_type, bool) or not isinstance(raw_type, int):
        raise _fail("Raft message type", "an int", raw_type)
    try:
        message_type = MessageType(raw_type)
    except ValueError as exc:
        raise RemoteProtocolError(f"unknown Raft message type {raw_type}") from exc
    tail_length, decoder = _DECODERS[message_type]
    _array(fields, message_type.name, 4 + tail_length)
    head = {
        "term": _int(fields[1], f"{message_type.name}.term"),
        "from_id": _node_id(fields[2], f"{message_type.name}.from_id"),
        "to_id": _node_id(fields[3], f"{message_type.name}.to_id"),
    }
    message = decoder(fields[4:], head)
    check_message(message)
    return message


def decode_entry(data: bytes) -> Entry:
    """Parse what :func:`encode_entry` wrote."""
    entry = _entry(_unpack(data, "entry"), "entry")
    if entry.kind is EntryKind.CONF_CHANGE:
        ConfChange.from_bytes(entry.data)
    return entry


def decode_snapshot(data: bytes) -> Snapshot:
    """Parse what :func:`encode_snapshot` wrote."""
    return _snapshot(_unpack(data, "snapshot"), "snapshot")


def decode_hard_state(data: bytes) -> HardState:
    """Parse what :func:`encode_hard_state` wrote."""
    fields = _array(_unpack(data, "hard state"), "hard state", 3)
    vote = None if fields[1] is None else _node_id(fields[1], "hard state.vote")
    return HardState(
        term=_int(fields[0], "hard state.term"),
        vote=vote,
        commit=_int(fields[2], "hard state.commit"),
    )
