"""Strict checks shared by the msgpack wire codecs of the protocol cores.

Every decoder in ``protocol/`` (membership, raft) validates decoded msgpack the same
way: exact types (an int is not a bool), exact array lengths, bounded values, and a
:class:`~protocol.errors.RemoteProtocolError` naming where the input went wrong.
"""

from __future__ import annotations

from typing import Any

from protocol.errors import RemoteProtocolError

COUNTER_MAX = 2**63 - 1
"""Largest counter on the wire: incarnations, versions, terms, indexes (msgpack int64)."""
NODE_ID_CHARS_MAX = 64
"""Node ids are 26 base32 characters today; leave room for other schemes."""
SHOWN_CHARS_MAX = 60
"""How much of an offending value an error message quotes."""


def fail(where: str, expected: str, value: object) -> RemoteProtocolError:
    """The error for ``value`` found at ``where`` instead of ``expected``."""
    shown = repr(value)
    if len(shown) > SHOWN_CHARS_MAX:
        shown = shown[: SHOWN_CHARS_MAX - 3] + "..."
    return RemoteProtocolError(f"{where}: expected {expected}, got {shown}")


def array(value: object, where: str, length: int | None = None) -> tuple[Any, ...]:
    """A msgpack array (decoded as a tuple), of exactly ``length`` items if given."""
    if not isinstance(value, tuple):
        raise fail(where, "an array", value)
    if length is not None and len(value) != length:
        raise fail(where, f"an array of {length} items", value)
    return value


def uint(value: object, where: str, high: int = COUNTER_MAX) -> int:
    """An int in ``[0, high]`` (a bool is not an int)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise fail(where, f"an int in [0, {high}]", value)
    return value


def boolean(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise fail(where, "a bool", value)
    return value


def node_id(value: object, where: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= NODE_ID_CHARS_MAX:
        raise fail(where, f"a node id of 1 to {NODE_ID_CHARS_MAX} chars", value)
    return value
