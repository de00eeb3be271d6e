"""Canonical msgpack: one value, one byte string.

Theory of operation
-------------------
A record is hashed and signed as bytes, so every party must turn the same value into
the same bytes, and a decoder must refuse any other bytes for it — otherwise one signed
record would have several encodings and several hashes.  The rules:

* values are ``None``, ``bool``, integers in ``[-2**63, 2**64)``, ``str`` (msgpack
  str, UTF-8), ``bytes`` (msgpack bin, ``use_bin_type``), sequences (msgpack array) and
  mappings with ``str`` keys (msgpack map).  **No floats**: their encodings are not
  unique across implementations (float32 vs float64, NaN payloads, -0.0) and they have
  no place in an audit trail.  Extension types are refused too;
* maps are written with their keys sorted by code point (which is UTF-8 byte order);
* every length and integer uses msgpack's shortest form, which is what msgpack-python
  writes;
* nesting is bounded by :data:`DEPTH_MAX`.

Decoding is strict by construction: the bytes are unpacked, the value is checked
against the rules above, re-encoded, and must come out byte for byte identical.  That
rejects unsorted or duplicate keys, long forms of short values, str where bin is
expected and trailing bytes, without a hand-written msgpack parser.

Values are frozen on the way in (mappings become read-only proxies, sequences become
tuples) so that a record, once built, can no longer change under its hash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TypeAlias

import msgpack

from crypto.audit.errors import RecordFormatError

__all__ = [
    "DEPTH_MAX",
    "INT_MAX",
    "INT_MIN",
    "Value",
    "freeze",
    "pack",
    "to_packable",
    "unpack",
]

Value: TypeAlias = bool | int | str | bytes | Sequence["Value"] | Mapping[str, "Value"] | None
"""A value allowed in a record body."""

DEPTH_MAX = 16
"""Deepest nesting of arrays and maps in a body; audit bodies are small and flat."""

INT_MIN = -(1 << 63)
INT_MAX = (1 << 64) - 1
"""msgpack integers are int64 or uint64."""


def to_packable(value: object, field: str, depth: int = 0) -> object:
    """Check ``value`` against the canonical rules; return it as plain lists and
    key-sorted dicts, ready for :func:`pack`.  ``field`` names it in errors."""
    # Subclasses (IntEnum, str enums...) are turned into the base type: the packer is
    # strict about types, and an enum's identity is not part of the record.
    if value is None:
        return None
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise RecordFormatError(field, f"integer {value} does not fit in 64 bits")
        return int(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, float):
        raise RecordFormatError(field, "floats are not allowed (use an integer in base units)")
    if depth >= DEPTH_MAX:
        raise RecordFormatError(field, f"nested deeper than {DEPTH_MAX} levels")
    if isinstance(value, Mapping):
        result: dict[str, object] = {}
        for key in sorted(_check_keys(value, field)):
            result[key] = to_packable(value[key], f"{field}.{key}", depth + 1)
        return result
    if isinstance(value, (list, tuple)):
        return [to_packable(item, f"{field}[{i}]", depth + 1) for i, item in enumerate(value)]
    raise RecordFormatError(field, f"type {type(value).__name__} is not allowed")


def freeze(value: object, field: str, depth: int = 0) -> Value:
    """Check ``value`` like :func:`to_packable`; return an immutable copy."""
    packable = to_packable(value, field, depth)
    return _freeze_checked(packable)


def pack(value: object) -> bytes:
    """Return the msgpack bytes of a value already passed through :func:`to_packable`."""
    data: bytes = msgpack.packb(value, use_bin_type=True, strict_types=True)
    return data


def unpack(data: bytes, field: str) -> object:
    """Unpack one msgpack value from ``data``, refusing trailing bytes, ext types and
    non-str map keys.  The result still has to be checked; see the module docstring."""
    try:
        value: object = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_refuse_ext,
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise RecordFormatError(field, f"not a msgpack value: {exc}") from exc
    return value


def _check_keys(mapping: Mapping[object, object], field: str) -> list[str]:
    keys: list[str] = []
    for key in mapping:
        if not isinstance(key, str):
            raise RecordFormatError(field, f"map key {key!r} is not a string")
        keys.append(key)
    return keys


def _freeze_checked(value: object) -> Value:
    if isinstance(value, dict):
        return MappingProxyType({key: _freeze_checked(item) for key, item in value.items()})
    if isinstance(value, list):
        return tuple(_freeze_checked(item) for item in value)
    assert value is None or isinstance(value, (bool, int, str, bytes))  # to_packable did it
    return value


def _refuse_ext(code: int, data: bytes) -> object:
    raise ValueError(f"msgpack extension type {code} is not allowed")
