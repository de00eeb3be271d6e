"""The activation wire format: a strict msgpack header, then raw tensor bytes.

Theory of operation
-------------------
Every message on a ``stage`` session (see :mod:`protocol.pipeline.opening`) is one
secure-stream BULK frame of kind :data:`BULK_KIND_ACTIVATION`: the frame's *header*
field holds the msgpack header below, its *body* the tensor's raw bytes, C-contiguous,
little-endian, exactly ``prod(shape) * itemsize(dtype)`` of them.  The body is never
unpickled or ``torch.load``-ed: the receiver checks the header, checks the length and
views the bytes as a tensor of the announced dtype and shape.

The header is a msgpack map with these keys (strings), all required for every kind::

    v        int    header version, ACTIVATION_VERSION (1)
    kind     int    MessageKind: 1 prefill chunk, 2 decode step, 3 token result, 4 error
    epoch    int    placement epoch the sender runs under (fencing)
    session  bin16  session id chosen by the driver
    step     int    message number within the session, 0, 1, 2 ... (no gaps)
    pos      int    position of the first token the tensor covers
    dtype    str    one of DTYPE_ITEMSIZE: f32, f16, bf16, i64
    shape    array  1 to RANK_MAX dims, each in [0, DIM_MAX]

and per kind exactly these extra keys::

    prefill  last   bool   true on the prompt's final chunk (a token is sampled)
    token    times  array  seconds each stage computed for this step, in stage order
    error    code   str    a short machine word (ERROR_CODES), detail str: for people

Shapes by kind: prefill and decode carry token ids ``i64 [B, T]`` to the first stage
or hidden states ``[B, T, hidden]`` (f32/f16/bf16) between stages, decode with
``T == 1``; a token result carries ``i64 [B]``; an error ``i64 [0]`` (no body).

Decoding is strict and bounded: unknown or missing keys, a bool where an int belongs,
a dtype outside the allow-list, a rank or size out of bounds, and a body whose length
is not what the header announces each raise their own
:class:`~protocol.pipeline.errors.ActivationError` subclass.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass
from typing import Any

import msgpack

from protocol.errors import LocalProtocolError
from protocol.frames import BULK_HEADER_BYTES_MAX
from protocol.pipeline.errors import (
    ActivationError,
    ActivationHeaderError,
    ActivationShapeError,
    BodyLengthError,
    UnsupportedDtypeError,
    UnsupportedVersionError,
)
from protocol.wire import COUNTER_MAX

ACTIVATION_VERSION = 1
BULK_KIND_ACTIVATION = 16
"""BULK frame kind of an activation message on a stage session."""
SESSION_ID_BYTES = 16
DTYPE_ITEMSIZE: dict[str, int] = {"f32": 4, "f16": 2, "bf16": 2, "i64": 8}
"""The allow-list: dtype tag -> bytes per element."""
FLOAT_DTYPES = ("f32", "f16", "bf16")
RANK_MAX = 4
DIM_MAX = 1 << 24
"""No dimension of an activation is above 16 Mi (tokens, hidden size, vocabulary)."""
ACTIVATION_BYTES_MAX = 1 << 30
"""One message carries at most 1 GiB: a 8192-token chunk of a 16384-wide fp32 model
is 512 MiB; send smaller chunks beyond that."""
POSITION_MAX = 1 << 24
"""Matches the placement's longest context (``CONTEXT_TOKENS_MAX``)."""
STAGE_TIMES_MAX = 1024
"""Matches the placement's ``STAGES_MAX``."""
ERROR_DETAIL_CHARS_MAX = 1024
ERROR_CODES = (
    "bad_activation",
    "stale_epoch",
    "context_exceeded",
    "unknown_model",
    "not_assigned",
    "load_failed",
    "evicted",
    "unreachable",
    "internal",
)
"""Machine-readable error words (append only).  ``bad_activation``: the previous hop
sent a wrong message; ``stale_epoch``: epochs differ; ``context_exceeded``: the KV
cache bound was hit; ``unknown_model``: the model is not in ``runtime.models``;
``not_assigned``: this node is not the stage the open names; ``load_failed``: the
stage could not be loaded; ``evicted``: the session's KV cache was evicted (LRU);
``unreachable``: the next stage could not be reached; ``internal``: a bug."""
_CODE_RE = re.compile(r"^[a-z][a-z_]{0,31}$")

_COMMON_KEYS = frozenset({"v", "kind", "epoch", "session", "step", "pos", "dtype", "shape"})


class MessageKind(enum.IntEnum):
    """What an activation message is.  Append only: never renumber or reuse a value."""

    PREFILL = 1
    DECODE = 2
    TOKEN = 3
    ERROR = 4


_EXTRA_KEYS: dict[MessageKind, frozenset[str]] = {
    MessageKind.PREFILL: frozenset({"last"}),
    MessageKind.DECODE: frozenset(),
    MessageKind.TOKEN: frozenset({"times"}),
    MessageKind.ERROR: frozenset({"code", "detail"}),
}


@dataclass(frozen=True, kw_only=True, slots=True)
class ActivationHeader:
    """One activation message's header (see the module docstring for the wire form)."""

    kind: MessageKind
    epoch: int
    """Placement epoch the sender runs under."""
    session_id: bytes
    """16 bytes chosen by the driver; names the KV caches along the chain."""
    step: int
    """Message number within the session (0, 1, 2 ...)."""
    first_position: int
    """Position of the tensor's first token in the sequence."""
    dtype: str
    """Tag from :data:`DTYPE_ITEMSIZE`."""
    shape: tuple[int, ...]
    last_chunk: bool = False
    """Prefill only: the prompt's final chunk (the last stage samples a token)."""
    stage_times_s: tuple[float, ...] = ()
    """Token only: compute seconds of each stage for this step, in stage order."""
    error_code: str = ""
    """Error only: one of :data:`ERROR_CODES` (unknown words are passed on as given)."""
    error_detail: str = ""
    """Error only: what went wrong, for people."""
    version: int = ACTIVATION_VERSION

    @property
    def body_bytes(self) -> int:
        """Length the body must have: ``prod(shape) * itemsize``."""
        return math.prod(self.shape) * DTYPE_ITEMSIZE[self.dtype]


def error_header(
    *, epoch: int, session_id: bytes, step: int, code: str, detail: str
) -> ActivationHeader:
    """An error message (no body); ``detail`` is cut to :data:`ERROR_DETAIL_CHARS_MAX`."""
    return ActivationHeader(
        kind=MessageKind.ERROR,
        epoch=epoch,
        session_id=session_id,
        step=step,
        first_position=0,
        dtype="i64",
        shape=(0,),
        error_code=code,
        error_detail=detail[:ERROR_DETAIL_CHARS_MAX],
    )


def encode_header(header: ActivationHeader) -> bytes:
    """The msgpack header bytes; LocalProtocolError when ``header`` breaks a rule."""
    wire: dict[str, Any] = {
        "v": header.version,
        "kind": int(header.kind),
        "epoch": header.epoch,
        "session": header.session_id,
        "step": header.step,
        "pos": header.first_position,
        "dtype": header.dtype,
        "shape": list(header.shape),
    }
    if header.kind == MessageKind.PREFILL:
        wire["last"] = header.last_chunk
    elif header.kind == MessageKind.TOKEN:
        wire["times"] = [float(t) for t in header.stage_times_s]
    elif header.kind == MessageKind.ERROR:
        wire["code"], wire["detail"] = header.error_code, header.error_detail
    data: bytes = msgpack.packb(wire, use_bin_type=True)
    try:
        decoded = decode_header(data)
    except ActivationError as exc:
        raise LocalProtocolError(f"cannot encode activation header: {exc}") from exc
    if decoded != header:
        raise LocalProtocolError("activation header does not survive a round trip")
    return data


def decode_header(data: bytes | bytearray) -> ActivationHeader:
    """Strictly decode and bound-check a header (an ActivationError on anything else)."""
    if len(data) > BULK_HEADER_BYTES_MAX:
        raise ActivationHeaderError(f"header of {len(data)} bytes > {BULK_HEADER_BYTES_MAX}")
    try:
        raw = msgpack.unpackb(bytes(data), raw=False, strict_map_key=True, use_list=True)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ActivationHeaderError(f"header is not msgpack: {exc}") from exc
    if not isinstance(raw, dict):
        raise ActivationHeaderError(f"header must be a map, got {type(raw).__name__}")
    version = raw.get("v")
    if version != ACTIVATION_VERSION or isinstance(version, bool):
        raise UnsupportedVersionError(
            f"header version {version!r:.20}; this node speaks {ACTIVATION_VERSION}"
        )
    kind_value = _uint(raw, "kind", 255)
    try:
        kind = MessageKind(kind_value)
    except ValueError:
        raise ActivationHeaderError(f"kind: unknown message kind {kind_value}") from None
    expected_keys = _COMMON_KEYS | _EXTRA_KEYS[kind]
    if set(raw) != expected_keys:
        missing, extra = sorted(expected_keys - set(raw)), sorted(set(raw) - expected_keys)
        raise ActivationHeaderError(
            f"{kind.name.lower()} header keys: missing {missing}, unexpected {extra[:8]}"
        )
    session = raw["session"]
    if not isinstance(session, bytes) or len(session) != SESSION_ID_BYTES:
        raise ActivationHeaderError(f"session: expected {SESSION_ID_BYTES} bytes of bin")
    header = ActivationHeader(
        kind=kind,
        epoch=_uint(raw, "epoch"),
        session_id=session,
        step=_uint(raw, "step"),
        first_position=_uint(raw, "pos", POSITION_MAX),
        dtype=_dtype(raw["dtype"]),
        shape=_shape(raw["shape"]),
        last_chunk=_bool(raw, "last") if kind == MessageKind.PREFILL else False,
        stage_times_s=_times(raw["times"]) if kind == MessageKind.TOKEN else (),
        error_code=_code(raw["code"]) if kind == MessageKind.ERROR else "",
        error_detail=_detail(raw["detail"]) if kind == MessageKind.ERROR else "",
    )
    _check_kind_shape(header)
    return header


def check_body(header: ActivationHeader, body_bytes: int) -> None:
    """BodyLengthError unless the body is exactly ``prod(shape) * itemsize`` bytes."""
    if body_bytes != header.body_bytes:
        raise BodyLengthError(
            f"body of {body_bytes} bytes; {header.dtype} {list(header.shape)} "
            f"needs {header.body_bytes}"
        )


def _uint(raw: dict[str, Any], key: str, high: int = COUNTER_MAX) -> int:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise ActivationHeaderError(f"{key}: expected an int in [0, {high}], got {value!r:.40}")
    return value


def _bool(raw: dict[str, Any], key: str) -> bool:
    value = raw[key]
    if not isinstance(value, bool):
        raise ActivationHeaderError(f"{key}: expected a bool, got {value!r:.40}")
    return value


def _dtype(value: object) -> str:
    if not isinstance(value, str) or value not in DTYPE_ITEMSIZE:
        raise UnsupportedDtypeError(
            f"dtype {value!r:.40} is not one of {', '.join(DTYPE_ITEMSIZE)}"
        )
    return value


def _shape(value: object) -> tuple[int, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= RANK_MAX:
        raise ActivationShapeError(f"shape must be an array of 1 to {RANK_MAX} dims")
    for dim in value:
        if isinstance(dim, bool) or not isinstance(dim, int) or not 0 <= dim <= DIM_MAX:
            raise ActivationShapeError(f"shape dim {dim!r:.20} not an int in [0, {DIM_MAX}]")
    return tuple(value)


def _times(value: object) -> tuple[float, ...]:
    if not isinstance(value, list) or len(value) > STAGE_TIMES_MAX:
        raise ActivationHeaderError(f"times: expected an array of at most {STAGE_TIMES_MAX}")
    for item in value:
        if not isinstance(item, float) or not math.isfinite(item) or item < 0:
            raise ActivationHeaderError(f"times: {item!r:.20} is not a finite float >= 0")
    return tuple(value)


def _code(value: object) -> str:
    if not isinstance(value, str) or not _CODE_RE.match(value):
        raise ActivationHeaderError(f"code: {value!r:.40} is not a short lowercase word")
    return value


def _detail(value: object) -> str:
    if not isinstance(value, str) or len(value) > ERROR_DETAIL_CHARS_MAX:
        raise ActivationHeaderError(f"detail: expected a str of at most {ERROR_DETAIL_CHARS_MAX}")
    return value


def _check_kind_shape(header: ActivationHeader) -> None:
    shape, kind = header.shape, header.kind
    if header.body_bytes > ACTIVATION_BYTES_MAX:
        raise ActivationShapeError(
            f"{header.dtype} {list(shape)} is {header.body_bytes} bytes > {ACTIVATION_BYTES_MAX}"
        )
    if kind in (MessageKind.PREFILL, MessageKind.DECODE):
        ids = header.dtype == "i64" and len(shape) == 2
        hidden = header.dtype in FLOAT_DTYPES and len(shape) == 3
        if not (ids or hidden) or 0 in shape:
            raise ActivationShapeError(
                f"{kind.name.lower()} carries i64 [B, T] or float [B, T, hidden] with no "
                f"empty dim, got {header.dtype} {list(shape)}"
            )
        if kind == MessageKind.DECODE and shape[1] != 1:
            raise ActivationShapeError(f"a decode step carries one token, got T={shape[1]}")
        if header.first_position + shape[1] > POSITION_MAX:
            raise ActivationShapeError(f"positions end past {POSITION_MAX}")
    elif kind == MessageKind.TOKEN:
        if header.dtype != "i64" or len(shape) != 1 or shape[0] == 0:
            raise ActivationShapeError(
                f"a token result is i64 [B], got {header.dtype} {list(shape)}"
            )
    elif header.dtype != "i64" or shape != (0,):
        raise ActivationShapeError(f"an error carries i64 [0], got {header.dtype} {list(shape)}")
