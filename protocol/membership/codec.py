"""Versioned msgpack wire format of the membership messages (memberlist net.go).

Theory of operation
-------------------
A message on the wire is one codec-version byte followed by one msgpack array::

    [CODEC_VERSION] msgpack([type, field, field, ...])

``type`` is a :class:`~protocol.membership.messages.MessageType`; the fields follow
in the positional order below (arrays, not maps, to keep datagrams small)::

    PING           [1, seq_no, target_id, source_id]
    INDIRECT_PING  [2, seq_no, target_id, target_addr, nack_after_ms | nil]
    ACK            [3, seq_no]
    NACK           [4, seq_no]
    SUSPECT        [5, node_id, incarnation, from_id]
    ALIVE          [6, record]
    DEAD           [7, node_id, incarnation, from_id]
    PUSH_PULL      [8, join, reply, [[record, state], ...]]
    COMPOUND       [9, [message, ...]]            (no COMPOUND or PUSH_PULL inside)

    record  [node_id, incarnation, version, [address...], [role...], software_version,
             protocol_version, [device...], [[peer, rtt_ms]...],
             [[peer, bytes_per_s]...], health, drain, name]
    device  [kind, name, memory_total_bytes, memory_free_bytes, compute_tflops]

Decoding is strict: exact arity, exact types (an int is not a float, a bool is not an
int), every size under a named limit.  Anything else raises
:class:`~protocol.errors.RemoteProtocolError` saying what was wrong and where;
nothing else escapes :func:`decode`.

Datagram budget: gossip travels in UDP payloads of at most
:data:`UDP_PAYLOAD_BYTES_MAX` bytes, sealed with XChaCha20-Poly1305 (24-byte nonce,
16-byte tag), so an unsealed datagram may hold :data:`DATAGRAM_PLAINTEXT_BYTES_MAX`.

Broadcasts are encoded once as *parts* (the msgpack array without the version byte)
and later concatenated into compounds by :func:`encode_compound_parts`, which is why
:data:`COMPOUND_OVERHEAD_BYTES` is a fixed upper bound.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgpack

from protocol.errors import RemoteProtocolError
from protocol.membership.messages import (
    SEQ_NO_MODULUS,
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
    SharedMembers,
    SimpleMessage,
    Suspect,
)
from protocol.membership.record import (
    DeviceInfo,
    MemberRecord,
    check_address,
)
from protocol.membership.state import MemberState
from protocol.wire import array as _array
from protocol.wire import boolean as _bool
from protocol.wire import fail as _fail
from protocol.wire import node_id as _node_id
from protocol.wire import uint as _int

CODEC_VERSION = 1
"""First byte of every message; bump on any incompatible change."""
UDP_PAYLOAD_BYTES_MAX = 1400
"""Largest gossip datagram on the wire (memberlist UDPBufferSize), below common MTUs."""
SEAL_NONCE_BYTES = 24
"""XChaCha20-Poly1305 random nonce, sent with each sealed datagram."""
SEAL_TAG_BYTES = 16
"""Poly1305 authentication tag."""
SEAL_OVERHEAD_BYTES = SEAL_NONCE_BYTES + SEAL_TAG_BYTES
DATAGRAM_PLAINTEXT_BYTES_MAX = UDP_PAYLOAD_BYTES_MAX - SEAL_OVERHEAD_BYTES
"""Largest encoded message the core sends as a datagram (1360 bytes)."""
MESSAGE_BYTES_MAX = 24 * 1024 * 1024
"""Largest message accepted at all (a push-pull of a full cluster, over the stream)."""
PUSH_PULL_MEMBERS_MAX = 16_384
"""Members in one push-pull; also the largest msgpack array accepted."""
COMPOUND_MESSAGES_MAX = 64
"""Messages bundled into one compound datagram."""
COMPOUND_OVERHEAD_BYTES = 6
"""Upper bound of what a compound adds around its parts: version byte, outer array
header, type, inner array header (array16 for more than 15 parts)."""
WIRE_STR_BYTES_MAX = 256
"""Guard on any msgpack string before field checks apply their own limits."""
NACK_AFTER_MS_MAX = 600_000
"""Longest nack delay a requester may ask of a helper (10 minutes)."""


def encode(message: Message) -> bytes:
    """The wire form of ``message``: version byte, then the msgpack array."""
    return bytes((CODEC_VERSION,)) + encode_part(message)


def encode_part(message: Message) -> bytes:
    """The msgpack array of ``message`` without the version byte (a compound part).

    ALIVE and PUSH_PULL are assembled from the packed records (see
    :func:`_record_bytes`): the same bytes ``msgpack.packb`` gives for the nested
    arrays, without re-encoding a record that has not changed.
    """
    match message:
        case Alive():
            return _ALIVE_HEADER + _record_bytes(message.record)
        case PushPull():
            header = _push_pull_header(message)
            members = message.members
            if isinstance(members, SharedMembers):
                return header + _shared_members_bytes(members)
            return header + b"".join(_entry_bytes(m) for m in members)
    packed: bytes = msgpack.packb(_to_wire(message), use_bin_type=True)
    return packed


def encoded_size(message: Message) -> int:
    """``len(encode(message))``; a push-pull of ``SharedMembers`` is measured without
    building its bytes (megabytes at N=10,000), from the lengths of the packed entries."""
    if isinstance(message, PushPull) and isinstance(message.members, SharedMembers):
        header = _push_pull_header(message)
        return 1 + len(header) + _shared_members_size(message.members)
    return len(encode(message))


def _push_pull_header(message: PushPull) -> bytes:
    header: bytes = (
        _PACKER.pack_array_header(4)
        + _PACKER.pack(int(MessageType.PUSH_PULL))
        + _PACKER.pack(message.join)
        + _PACKER.pack(message.reply)
        + _PACKER.pack_array_header(len(message.members))
    )
    return header


_PACKER = msgpack.Packer(use_bin_type=True)
_ALIVE_HEADER: bytes = _PACKER.pack_array_header(2) + _PACKER.pack(int(MessageType.ALIVE))
RECORD_BYTES_CACHED_MAX = 65_536
"""Packed records remembered by :func:`_record_bytes` before the memo starts over."""
_record_memo: dict[int, tuple[MemberRecord, bytes]] = {}


def _record_bytes(record: MemberRecord) -> bytes:
    """``record`` packed; memoised by identity, since records are immutable and the same
    record object is re-sent many times (every push-pull carries the whole table).
    The memo holds the record itself, so an id is never reused while it is cached."""
    cached = _record_memo.get(id(record))
    if cached is not None and cached[0] is record:
        return cached[1]
    packed: bytes = msgpack.packb(_record_to_wire(record), use_bin_type=True)
    if len(_record_memo) >= RECORD_BYTES_CACHED_MAX:
        _record_memo.clear()
    _record_memo[id(record)] = (record, packed)
    return packed


def _entry_bytes(entry: PushPullEntry) -> bytes:
    state: bytes = _PACKER.pack(int(entry.state))
    return _ENTRY_HEADER + _record_bytes(entry.record) + state


_ENTRY_HEADER: bytes = _PACKER.pack_array_header(2)


class _PackedBase:
    """A shared table's entries packed once: the parts in iteration order, the position
    of each member's part and the total length."""

    __slots__ = ("base", "parts", "position", "total")

    def __init__(self, base: Mapping[str, PushPullEntry]) -> None:
        self.base = base
        self.parts = [_entry_bytes(entry) for entry in base.values()]
        self.position = {node_id: i for i, node_id in enumerate(base)}
        self.total = sum(len(part) for part in self.parts)


_shared_memo: dict[int, _PackedBase] = {}


def _packed_base(base: Mapping[str, PushPullEntry]) -> _PackedBase:
    cached = _shared_memo.get(id(base))
    if cached is None or cached.base is not base:
        cached = _PackedBase(base)
        _shared_memo.clear()  # one simulated cluster at a time
        _shared_memo[id(base)] = cached
    return cached


def _shared_members_bytes(members: SharedMembers) -> bytes:
    """The packed entries of ``members`` in iteration order: the base's entries are
    packed once per base and copied as a list, so only the changes cost Python work."""
    packed = _packed_base(members.base)
    parts = list(packed.parts)
    position = packed.position
    for node_id in members.hidden:
        parts[position[node_id]] = b""
    return b"".join(_entry_bytes(m) for m in members.changed) + b"".join(parts)


def _shared_members_size(members: SharedMembers) -> int:
    """``len(_shared_members_bytes(members))`` in O(changes)."""
    packed = _packed_base(members.base)
    parts, position = packed.parts, packed.position
    size = packed.total + sum(len(_entry_bytes(m)) for m in members.changed)
    return size - sum(len(parts[position[node_id]]) for node_id in members.hidden)


def encode_single_part(part: bytes) -> bytes:
    """A stand-alone message from one pre-encoded part (see :func:`encode_part`)."""
    return bytes((CODEC_VERSION,)) + part


def encode_compound_parts(parts: Sequence[bytes]) -> bytes:
    """A COMPOUND message made of pre-encoded parts (see :func:`encode_part`)."""
    if not 0 < len(parts) <= COMPOUND_MESSAGES_MAX:
        raise ValueError(f"a compound holds 1 to {COMPOUND_MESSAGES_MAX} parts")
    packer = msgpack.Packer(use_bin_type=True)
    header: bytes = packer.pack_array_header(2) + packer.pack(int(MessageType.COMPOUND))
    header += packer.pack_array_header(len(parts))
    return bytes((CODEC_VERSION,)) + header + b"".join(parts)


def _record_to_wire(record: MemberRecord) -> list[Any]:
    devices = [
        [d.kind, d.name, d.memory_total_bytes, d.memory_free_bytes, d.compute_tflops]
        for d in record.devices
    ]
    return [
        record.node_id,
        record.incarnation,
        record.version,
        list(record.addresses),
        list(record.roles),
        record.software_version,
        record.protocol_version,
        devices,
        [list(pair) for pair in record.rtt_ms],
        [list(pair) for pair in record.bandwidth_bytes_per_s],
        record.health,
        record.drain,
        record.name,
    ]


def _to_wire(message: Message) -> list[Any]:
    match message:
        case Ping():
            return [MessageType.PING, message.seq_no, message.target_id, message.source_id]
        case IndirectPing():
            return [
                MessageType.INDIRECT_PING,
                message.seq_no,
                message.target_id,
                message.target_addr,
                message.nack_after_ms,
            ]
        case Ack():
            return [MessageType.ACK, message.seq_no]
        case Nack():
            return [MessageType.NACK, message.seq_no]
        case Suspect():
            return [MessageType.SUSPECT, message.node_id, message.incarnation, message.from_id]
        case Alive():
            return [MessageType.ALIVE, _record_to_wire(message.record)]
        case Dead():
            return [MessageType.DEAD, message.node_id, message.incarnation, message.from_id]
        case PushPull():
            members = [[_record_to_wire(m.record), int(m.state)] for m in message.members]
            return [MessageType.PUSH_PULL, message.join, message.reply, members]
        case Compound():
            return [MessageType.COMPOUND, [_to_wire(m) for m in message.messages]]
    raise TypeError(f"not a membership message: {message!r}")


def decode(data: bytes) -> Message:
    """Parse one message; raise ``RemoteProtocolError`` on anything malformed."""
    if not data:
        raise RemoteProtocolError("empty membership message: the codec version byte is missing")
    if len(data) > MESSAGE_BYTES_MAX:
        raise RemoteProtocolError(
            f"membership message of {len(data)} bytes exceeds {MESSAGE_BYTES_MAX}"
        )
    if data[0] != CODEC_VERSION:
        raise RemoteProtocolError(
            f"membership codec version {data[0]} is not supported (this node speaks"
            f" {CODEC_VERSION})"
        )
    try:
        wire = msgpack.unpackb(
            data[1:],
            use_list=False,
            raw=False,
            strict_map_key=True,
            max_str_len=WIRE_STR_BYTES_MAX,
            max_bin_len=0,
            max_array_len=PUSH_PULL_MEMBERS_MAX,
            max_map_len=0,
            max_ext_len=0,
        )
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
        raise RemoteProtocolError(f"malformed msgpack in membership message: {exc}") from exc
    return _message_from_wire(wire)


def _address(value: object, where: str) -> str:
    try:
        check_address(where, value)
    except ValueError as exc:
        raise RemoteProtocolError(str(exc)) from exc
    return str(value)


def _record(value: object, where: str) -> MemberRecord:
    fields = _array(value, where, 13)
    devices = tuple(
        _device(item, f"{where}.devices[{index}]")
        for index, item in enumerate(_array(fields[7], f"{where}.devices"))
    )
    try:
        return MemberRecord(
            node_id=fields[0],
            incarnation=fields[1],
            version=fields[2],
            addresses=fields[3],
            roles=fields[4],
            software_version=fields[5],
            protocol_version=fields[6],
            devices=devices,
            rtt_ms=fields[8],
            bandwidth_bytes_per_s=fields[9],
            health=fields[10],
            drain=fields[11],
            name=fields[12],
        )
    except (ValueError, TypeError) as exc:
        raise RemoteProtocolError(f"{where}: {exc}") from exc


def _device(value: object, where: str) -> DeviceInfo:
    fields = _array(value, where, 5)
    try:
        return DeviceInfo(
            kind=fields[0],
            name=fields[1],
            memory_total_bytes=fields[2],
            memory_free_bytes=fields[3],
            compute_tflops=fields[4],
        )
    except (ValueError, TypeError) as exc:
        raise RemoteProtocolError(f"{where}: {exc}") from exc


def _state(value: object, where: str) -> MemberState:
    number = _int(value, where, max(MemberState))
    return MemberState(number)


def _ping(fields: tuple[Any, ...]) -> Ping:
    _array(fields, "PING", 4)
    return Ping(
        seq_no=_int(fields[1], "PING.seq_no", SEQ_NO_MODULUS - 1),
        target_id=_node_id(fields[2], "PING.target_id"),
        source_id=_node_id(fields[3], "PING.source_id"),
    )


def _indirect_ping(fields: tuple[Any, ...]) -> IndirectPing:
    _array(fields, "INDIRECT_PING", 5)
    nack_after_ms = fields[4]
    if nack_after_ms is not None:
        nack_after_ms = _int(nack_after_ms, "INDIRECT_PING.nack_after_ms", NACK_AFTER_MS_MAX)
    return IndirectPing(
        seq_no=_int(fields[1], "INDIRECT_PING.seq_no", SEQ_NO_MODULUS - 1),
        target_id=_node_id(fields[2], "INDIRECT_PING.target_id"),
        target_addr=_address(fields[3], "INDIRECT_PING.target_addr"),
        nack_after_ms=nack_after_ms,
    )


def _ack(fields: tuple[Any, ...]) -> Ack:
    _array(fields, "ACK", 2)
    return Ack(seq_no=_int(fields[1], "ACK.seq_no", SEQ_NO_MODULUS - 1))


def _nack(fields: tuple[Any, ...]) -> Nack:
    _array(fields, "NACK", 2)
    return Nack(seq_no=_int(fields[1], "NACK.seq_no", SEQ_NO_MODULUS - 1))


def _suspect(fields: tuple[Any, ...]) -> Suspect:
    _array(fields, "SUSPECT", 4)
    return Suspect(
        node_id=_node_id(fields[1], "SUSPECT.node_id"),
        incarnation=_int(fields[2], "SUSPECT.incarnation"),
        from_id=_node_id(fields[3], "SUSPECT.from_id"),
    )


def _alive(fields: tuple[Any, ...]) -> Alive:
    _array(fields, "ALIVE", 2)
    return Alive(record=_record(fields[1], "ALIVE.record"))


def _dead(fields: tuple[Any, ...]) -> Dead:
    _array(fields, "DEAD", 4)
    return Dead(
        node_id=_node_id(fields[1], "DEAD.node_id"),
        incarnation=_int(fields[2], "DEAD.incarnation"),
        from_id=_node_id(fields[3], "DEAD.from_id"),
    )


def _push_pull(fields: tuple[Any, ...]) -> PushPull:
    _array(fields, "PUSH_PULL", 4)
    entries = []
    seen: set[str] = set()
    for index, item in enumerate(_array(fields[3], "PUSH_PULL.members")):
        where = f"PUSH_PULL.members[{index}]"
        pair = _array(item, where, 2)
        entry = PushPullEntry(record=_record(pair[0], where), state=_state(pair[1], where))
        if entry.record.node_id in seen:
            raise RemoteProtocolError(f"{where}: node {entry.record.node_id!r} listed twice")
        seen.add(entry.record.node_id)
        entries.append(entry)
    return PushPull(
        join=_bool(fields[1], "PUSH_PULL.join"),
        reply=_bool(fields[2], "PUSH_PULL.reply"),
        members=tuple(entries),
    )


_DECODERS: dict[MessageType, Callable[[tuple[Any, ...]], SimpleMessage]] = {
    MessageType.PING: _ping,
    MessageType.INDIRECT_PING: _indirect_ping,
    MessageType.ACK: _ack,
    MessageType.NACK: _nack,
    MessageType.SUSPECT: _suspect,
    MessageType.ALIVE: _alive,
    MessageType.DEAD: _dead,
    MessageType.PUSH_PULL: _push_pull,
}
_NOT_IN_COMPOUND = frozenset({MessageType.COMPOUND, MessageType.PUSH_PULL})


def _message_type(fields: tuple[Any, ...]) -> MessageType:
    if not fields:
        raise RemoteProtocolError("membership message: empty array, the type is missing")
    raw_type = fields[0]
    if isinstance(raw_type, bool) or not isinstance(raw_type, int):
        raise _fail("membership message type", "an int", raw_type)
    try:
        return MessageType(raw_type)
    except ValueError as exc:
        raise RemoteProtocolError(f"unknown membership message type {raw_type}") from exc


def _message_from_wire(wire: object) -> Message:
    fields = _array(wire, "membership message")
    message_type = _message_type(fields)
    if message_type is not MessageType.COMPOUND:
        return _DECODERS[message_type](fields)
    _array(fields, "COMPOUND", 2)
    parts = _array(fields[1], "COMPOUND.messages")
    if not 0 < len(parts) <= COMPOUND_MESSAGES_MAX:
        raise _fail("COMPOUND.messages", f"1 to {COMPOUND_MESSAGES_MAX} messages", parts)
    return Compound(messages=tuple(_part_from_wire(part) for part in parts))


def _part_from_wire(wire: object) -> SimpleMessage:
    fields = _array(wire, "COMPOUND part")
    message_type = _message_type(fields)
    if message_type in _NOT_IN_COMPOUND:
        raise RemoteProtocolError(f"COMPOUND may not contain {message_type.name}")
    return _DECODERS[message_type](fields)
