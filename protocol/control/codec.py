"""Versioned, canonical msgpack encoding of control commands.

Theory of operation
-------------------
A command in the log is one codec-version byte followed by one msgpack array whose
first item is the :class:`~protocol.control.commands.CommandKind`; the fields follow
in this positional order (append only: a new command gets a new kind, a new field
a new codec version)::

    ADMIT_MEMBER            [1, node_id, certificate]            certificate: bin
    REVOKE                  [2, serial, reason]
    PLACEMENT_EPOCH         [3, model_id, epoch, [stage...], decode_ns_per_token,
                             context_tokens, dtype, model_config]
                      v2:   [3, ..., model_config, method]
    FEDERATION_LINK_ADD     [4, address, ca_fingerprint]
    FEDERATION_LINK_REMOVE  [5, address, ca_fingerprint]

    stage  [node_id, device_index, first_layer, last_layer_exclusive, memory_bytes]

Versions: 1 is the layout above; 2 appends ``method`` to ``PLACEMENT_EPOCH`` (every
other command is the same in both).  A command is encoded in the *lowest* version
that can express it — a placement epoch without a method, and every other command,
in version 1 — so entries written before version 2 keep their exact bytes and stay
canonical, and each command still has exactly one encoding.

Decoding is strict: exact arity, exact types (a bool is not an int, a str is not
bin), every size under a named limit, the constructors' range checks, and finally
*canonical form*: re-encoding the decoded command must give the input bytes back, so
one command has exactly one encoding and every node hashes and audits the same
bytes.  Anything else raises :class:`~protocol.errors.RemoteProtocolError` (the
entry came from a peer's log); nothing else escapes :func:`decode_command`.
"""

from __future__ import annotations

from typing import Any

import msgpack

from protocol.control.commands import (
    CERTIFICATE_BYTES_MAX,
    MODEL_CONFIG_CHARS_MAX,
    PLACEMENT_STAGES_MAX,
    AdmitMember,
    Command,
    CommandKind,
    FederationLink,
    FederationLinkAdd,
    FederationLinkRemove,
    PlacementEpoch,
    Revoke,
    StageRange,
)
from protocol.errors import RemoteProtocolError
from protocol.wire import array, fail, uint

CODEC_VERSION = 2
"""The newest codec version (the first byte of an encoded command); bump on any
incompatible change."""
CODEC_VERSIONS = (1, 2)
"""Versions this node decodes (see the module docstring)."""
_PLACEMENT_FIELDS = {1: 8, 2: 9}
"""Items of a PLACEMENT_EPOCH array, kind included, per codec version."""
COMMAND_BYTES_MAX = 1024 * 1024
"""Largest encoded command: a 1024-stage placement (~100 KiB) and its model config."""
_STR_BYTES_MAX = MODEL_CONFIG_CHARS_MAX * 4  # utf-8; each field's own limit is checked after


def _stage_wire(stage: StageRange) -> list[Any]:
    return [
        stage.node_id,
        stage.device_index,
        stage.first_layer,
        stage.last_layer_exclusive,
        stage.memory_bytes,
    ]


def _wire(command: Command) -> list[Any]:
    if isinstance(command, AdmitMember):
        return [int(CommandKind.ADMIT_MEMBER), command.node_id, command.certificate]
    if isinstance(command, Revoke):
        return [int(CommandKind.REVOKE), command.serial, command.reason]
    if isinstance(command, PlacementEpoch):
        wire = [
            int(CommandKind.PLACEMENT_EPOCH),
            command.model_id,
            command.epoch,
            [_stage_wire(stage) for stage in command.stages],
            command.decode_ns_per_token,
            command.context_tokens,
            command.dtype,
            command.model_config,
        ]
        return [*wire, command.method] if command.method else wire
    if isinstance(command, FederationLinkAdd):
        kind = CommandKind.FEDERATION_LINK_ADD
    elif isinstance(command, FederationLinkRemove):
        kind = CommandKind.FEDERATION_LINK_REMOVE
    else:
        raise TypeError(f"not a control command: {command!r:.60}")
    return [int(kind), command.link.address, command.link.ca_fingerprint]


def _version(command: Command) -> int:
    """The lowest codec version that expresses ``command``."""
    return 2 if isinstance(command, PlacementEpoch) and command.method else 1


def encode_command(command: Command) -> bytes:
    """The log entry data of ``command``."""
    packed: bytes = msgpack.packb(_wire(command), use_bin_type=True)
    return bytes((_version(command),)) + packed


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise fail(where, "a str", value)
    return value


def _stage(value: object, where: str) -> StageRange:
    node_id, device, first, last, memory = array(value, where, 5)
    return StageRange(
        node_id=_text(node_id, f"{where} node_id"),
        device_index=uint(device, f"{where} device_index"),
        first_layer=uint(first, f"{where} first_layer"),
        last_layer_exclusive=uint(last, f"{where} last_layer_exclusive"),
        memory_bytes=uint(memory, f"{where} memory_bytes"),
    )


def _link(fields: tuple[Any, ...], where: str) -> FederationLink:
    address, fingerprint = fields
    return FederationLink(
        address=_text(address, f"{where} address"),
        ca_fingerprint=_text(fingerprint, f"{where} ca_fingerprint"),
    )


def _build(wire: tuple[Any, ...], version: int) -> Command:
    if not wire:
        raise fail("command", "a non-empty array", wire)
    kind_value = uint(wire[0], "command kind")
    try:
        kind = CommandKind(kind_value)
    except ValueError:
        raise fail("command kind", "a known CommandKind", kind_value) from None
    if kind is CommandKind.ADMIT_MEMBER:
        _, node_id, certificate = array(wire, "admit member", 3)
        if not isinstance(certificate, bytes):
            raise fail("admit member certificate", "bin", certificate)
        return AdmitMember(node_id=_text(node_id, "admit member node_id"), certificate=certificate)
    if kind is CommandKind.REVOKE:
        _, serial, reason = array(wire, "revoke", 3)
        return Revoke(serial=uint(serial, "revoke serial"), reason=_text(reason, "revoke reason"))
    if kind is CommandKind.PLACEMENT_EPOCH:
        fields = array(wire, "placement epoch", _PLACEMENT_FIELDS[version])
        _, model_id, epoch, stages, decode_ns, context_tokens, dtype, model_config = fields[:8]
        method = _text(fields[8], "placement method") if version >= 2 else ""
        stage_items = array(stages, "placement stages")
        return PlacementEpoch(
            model_id=_text(model_id, "placement model_id"),
            epoch=uint(epoch, "placement epoch"),
            stages=tuple(_stage(s, f"stage {i}") for i, s in enumerate(stage_items)),
            decode_ns_per_token=uint(decode_ns, "placement decode_ns_per_token"),
            context_tokens=uint(context_tokens, "placement context_tokens"),
            dtype=_text(dtype, "placement dtype"),
            model_config=_text(model_config, "placement model_config"),
            method=method,
        )
    fields = array(wire, "federation link", 3)[1:]
    if kind is CommandKind.FEDERATION_LINK_ADD:
        return FederationLinkAdd(link=_link(fields, "federation link add"))
    return FederationLinkRemove(link=_link(fields, "federation link remove"))


def decode_command(data: bytes) -> Command:
    """Strictly decode entry data (see the module docstring); ``RemoteProtocolError``."""
    if not isinstance(data, bytes) or not 1 < len(data) <= COMMAND_BYTES_MAX:
        raise RemoteProtocolError(f"a command is 2 to {COMMAND_BYTES_MAX} bytes")
    version = data[0]
    if version not in CODEC_VERSIONS:
        raise RemoteProtocolError(f"unknown control codec version {version}")
    try:
        wire = msgpack.unpackb(
            data[1:],
            raw=False,
            use_list=False,
            strict_map_key=True,
            max_bin_len=CERTIFICATE_BYTES_MAX,
            max_str_len=_STR_BYTES_MAX,
            max_array_len=PLACEMENT_STAGES_MAX,
            max_map_len=0,
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise RemoteProtocolError(f"malformed control command: {exc}") from exc
    try:
        command = _build(array(wire, "command"), version)
    except ValueError as exc:  # a constructor's range check
        raise RemoteProtocolError(f"invalid control command: {exc}") from exc
    if encode_command(command) != data:
        raise RemoteProtocolError("control command is not in canonical form")
    return command
