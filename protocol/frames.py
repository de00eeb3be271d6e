"""Secure-stream framing: length-prefixed Noise messages and the typed frames above them.

Theory of operation
-------------------
On TCP every Noise message travels as a 2-byte big-endian length followed by the
message (at most 65535 bytes, Noise's own limit).  :class:`MessageDecoder` turns
received bytes into whole messages, fed in any split — whole, byte by byte, or many
messages at once.

Once the handshake is done, the plaintext of each transport message is a *frame*.
Its first byte is the :class:`FrameType`; the rest depends on the type:

=================  ========================================================
``DATA``           bytes of the byte stream (``send_all`` / ``receive_some``)
``CONTROL``        one control message (msgpack, at most one Noise message)
``BULK``           a large payload: 8-byte total length, 1-byte kind, 2-byte
                   header length, header; then ``ceil(length / 65519)`` raw
                   *continuation* messages that are nothing but payload bytes
``END_OF_STREAM``  the sender is done; anything after it is a protocol error
=================  ========================================================

Continuation messages carry no type byte, so a bulk payload moves in full
65519-byte chunks (65535 minus the 16-byte tag), and the sender encrypts one chunk
at a time from a ``memoryview`` of the payload — the payload is never copied whole.
:class:`FrameDecoder` reassembles a bulk payload into one buffer that grows as the
chunks arrive: an announced length reserves nothing, so a peer cannot make us
allocate more than it actually sends (at most ``bulk_bytes_max``).

The explicit ``END_OF_STREAM`` frame makes truncation detectable: a connection that
ends without it was cut, not finished.

Everything here is pure: bytes in, messages and frames out.  Errors caused by the
peer raise :class:`~protocol.errors.RemoteProtocolError`.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from protocol.errors import LocalProtocolError, RemoteProtocolError

LENGTH_PREFIX_BYTES = 2
NOISE_MESSAGE_BYTES_MAX = 65535
NOISE_TAG_BYTES = 16
FRAME_PLAINTEXT_BYTES_MAX = NOISE_MESSAGE_BYTES_MAX - NOISE_TAG_BYTES  # 65519
"""Largest plaintext of one transport message; also the bulk chunk size."""
FRAME_BODY_BYTES_MAX = FRAME_PLAINTEXT_BYTES_MAX - 1
"""Largest DATA or CONTROL body (one byte goes to the frame type)."""
BULK_CHUNK_BYTES = FRAME_PLAINTEXT_BYTES_MAX
BULK_HEADER_BYTES_MAX = 8192
BULK_BYTES_MAX_DEFAULT = 1 << 32
"""Default cap on one bulk payload (4 GiB); receivers may lower it."""

_BULK_PREFIX = struct.Struct(">QBH")  # total length, kind, header length
_LENGTH = struct.Struct(">H")


class FrameType(enum.IntEnum):
    """Frame types.  Append only: never renumber or reuse a value."""

    DATA = 1
    CONTROL = 2
    BULK = 3
    END_OF_STREAM = 4


@dataclass(frozen=True, kw_only=True)
class DataFrame:
    data: bytes
    """A piece of the byte stream."""


@dataclass(frozen=True, kw_only=True)
class ControlFrame:
    payload: bytes
    """One control message, still encoded (the caller's codec decodes it)."""


@dataclass(frozen=True, kw_only=True)
class BulkFrame:
    kind: int
    """What the payload is (tensor chunk, weight file piece ...), chosen by the caller."""
    header: bytes
    """Caller-defined metadata, at most ``BULK_HEADER_BYTES_MAX`` bytes."""
    body: bytearray
    """The reassembled payload (mutable so it can back a tensor without a copy)."""


@dataclass(frozen=True, kw_only=True)
class EndOfStream:
    """The peer finished sending."""


Frame = DataFrame | ControlFrame | BulkFrame | EndOfStream


def frame_length_prefix(message_len: int) -> bytes:
    """The 2-byte prefix for a Noise message of ``message_len`` bytes."""
    if not 0 < message_len <= NOISE_MESSAGE_BYTES_MAX:
        raise LocalProtocolError(f"a Noise message is 1..65535 bytes, not {message_len}")
    return _LENGTH.pack(message_len)


class MessageDecoder:
    """Split a received byte stream into length-prefixed Noise messages.

    Each message costs one copy: it is sliced straight out of the chunk it arrived
    in.  Only a message split across chunks is assembled, from the older chunk's tail
    (kept in ``_partial``) and the newer chunk's head, still in one copy.
    """

    def __init__(self) -> None:
        self._partial = bytearray()
        """Received before ``_chunk`` and not yet returned: the start of a message."""
        self._chunk = b""
        """The latest chunk fed, kept as received (bytes are never copied on feed)."""
        self._offset = 0
        """How much of ``_chunk`` was consumed."""

    @property
    def pending_bytes(self) -> int:
        """Bytes received but not yet part of a whole message."""
        return len(self._partial) + len(self._chunk) - self._offset

    def feed(self, data: bytes | bytearray) -> None:
        if not data:
            return
        if self._offset < len(self._chunk):
            self._partial += memoryview(self._chunk)[self._offset :]
        self._chunk = bytes(data)  # no copy for bytes; a bytearray may change under us
        self._offset = 0

    def take_pending(self) -> bytes:
        """Remove and return the bytes not yet part of a message (hand-over to a stream)."""
        with memoryview(self._chunk) as chunk:
            pending = b"".join((self._partial, chunk[self._offset :]))
        self._partial.clear()
        self._chunk, self._offset = b"", 0
        return pending

    def next_message(self) -> bytes | None:
        """The next whole message, or None when more bytes are needed."""
        if self._partial:
            return self._next_split_message()
        chunk, start = self._chunk, self._offset
        if len(chunk) - start < LENGTH_PREFIX_BYTES:
            return None  # feed() moves the lone byte, if any, into _partial
        length = (chunk[start] << 8) | chunk[start + 1]
        if length == 0:
            raise RemoteProtocolError("received a zero-length Noise message")
        end = start + LENGTH_PREFIX_BYTES + length
        if end > len(chunk):
            return None
        if end == len(chunk):
            self._chunk, self._offset = b"", 0  # let the chunk go as soon as it is used up
        else:
            self._offset = end
        return chunk[start + LENGTH_PREFIX_BYTES : end]

    def _next_split_message(self) -> bytes | None:
        partial, chunk = self._partial, self._chunk
        if len(partial) < LENGTH_PREFIX_BYTES:
            take = min(LENGTH_PREFIX_BYTES - len(partial), len(chunk) - self._offset)
            partial += chunk[self._offset : self._offset + take]
            self._offset += take
            if len(partial) < LENGTH_PREFIX_BYTES:
                return None
        (length,) = _LENGTH.unpack_from(partial)
        if length == 0:
            raise RemoteProtocolError("received a zero-length Noise message")
        end = LENGTH_PREFIX_BYTES + length
        missing = end - len(partial)
        if missing <= 0:  # several messages were fed before any was taken
            with memoryview(partial) as held:
                message = bytes(held[LENGTH_PREFIX_BYTES:end])
            del partial[:end]
            return message
        if len(chunk) - self._offset < missing:
            return None
        with memoryview(partial) as head, memoryview(chunk) as tail:
            message = b"".join(
                (head[LENGTH_PREFIX_BYTES:], tail[self._offset : self._offset + missing])
            )
        partial.clear()
        self._offset += missing
        return message


_DATA_TYPE = bytes((FrameType.DATA,))
_CONTROL_TYPE = bytes((FrameType.CONTROL,))


def _body_bytes(body: bytes | bytearray | memoryview) -> int:
    return body.nbytes if isinstance(body, memoryview) else len(body)


def encode_data(data: bytes | bytearray | memoryview) -> bytes:
    """A DATA frame; ``data`` is copied once, straight into the frame."""
    size = _body_bytes(data)
    if size > FRAME_BODY_BYTES_MAX:
        raise LocalProtocolError(f"DATA body of {size} bytes > {FRAME_BODY_BYTES_MAX}")
    return _DATA_TYPE + data


def encode_control(payload: bytes | bytearray | memoryview) -> bytes:
    size = _body_bytes(payload)
    if size > FRAME_BODY_BYTES_MAX:
        raise LocalProtocolError(f"CONTROL body of {size} bytes > {FRAME_BODY_BYTES_MAX}")
    return _CONTROL_TYPE + payload


def encode_end_of_stream() -> bytes:
    return bytes((FrameType.END_OF_STREAM,))


def bulk_plaintexts(kind: int, header: bytes, body: bytes | memoryview) -> Iterator[bytes]:
    """The plaintexts of one bulk frame: its start, then its chunks, one at a time.

    Each chunk is copied out of ``body`` only when it is produced, so a large payload
    is never duplicated whole.
    """
    if not 0 <= kind <= 255:
        raise LocalProtocolError(f"bulk kind must fit one byte, got {kind}")
    if len(header) > BULK_HEADER_BYTES_MAX:
        raise LocalProtocolError(f"bulk header of {len(header)} bytes > {BULK_HEADER_BYTES_MAX}")
    view = memoryview(body).cast("B")
    yield bytes((FrameType.BULK,)) + _BULK_PREFIX.pack(len(view), kind, len(header)) + header
    for start in range(0, len(view), BULK_CHUNK_BYTES):
        yield bytes(view[start : start + BULK_CHUNK_BYTES])


class FrameDecoder:
    """Turn decrypted transport messages back into frames."""

    def __init__(self, *, bulk_bytes_max: int = BULK_BYTES_MAX_DEFAULT) -> None:
        self.bulk_bytes_max = bulk_bytes_max
        self._bulk: tuple[int, bytes, int, bytearray] | None = None
        self._ended = False

    @property
    def in_bulk(self) -> bool:
        """True while the continuation messages of a bulk frame are expected."""
        return self._bulk is not None

    def receive(self, plaintext: bytes) -> Frame | None:
        """Consume one message; return a finished frame, or None mid-bulk."""
        if self._ended:
            raise RemoteProtocolError("message received after END_OF_STREAM")
        if self._bulk is not None:
            return self._continue_bulk(plaintext)
        if not plaintext:
            raise RemoteProtocolError("empty frame")
        kind, body = plaintext[0], plaintext[1:]
        if kind == FrameType.DATA:
            return DataFrame(data=body)
        if kind == FrameType.CONTROL:
            return ControlFrame(payload=body)
        if kind == FrameType.END_OF_STREAM:
            if body:
                raise RemoteProtocolError("END_OF_STREAM frame with a body")
            self._ended = True
            return EndOfStream()
        if kind == FrameType.BULK:
            return self._start_bulk(body)
        raise RemoteProtocolError(f"unknown frame type {kind}")

    def _start_bulk(self, body: bytes) -> Frame | None:
        if len(body) < _BULK_PREFIX.size:
            raise RemoteProtocolError("truncated BULK frame header")
        total, kind, header_len = _BULK_PREFIX.unpack_from(body)
        header = body[_BULK_PREFIX.size :]
        if len(header) != header_len:
            raise RemoteProtocolError(
                f"BULK header length {header_len} does not match {len(header)} bytes sent"
            )
        if header_len > BULK_HEADER_BYTES_MAX:
            raise RemoteProtocolError(
                f"BULK header of {header_len} bytes > {BULK_HEADER_BYTES_MAX}"
            )
        if total > self.bulk_bytes_max:
            raise RemoteProtocolError(f"BULK payload of {total} bytes > {self.bulk_bytes_max}")
        if total == 0:
            return BulkFrame(kind=kind, header=header, body=bytearray())
        # Grown chunk by chunk, never bytearray(total): the total is the peer's word.
        self._bulk = (kind, header, total, bytearray())
        return None

    def _continue_bulk(self, chunk: bytes) -> Frame | None:
        assert self._bulk is not None
        kind, header, total, buffer = self._bulk
        expected = min(BULK_CHUNK_BYTES, total - len(buffer))
        if len(chunk) != expected:
            raise RemoteProtocolError(f"BULK chunk of {len(chunk)} bytes, expected {expected}")
        buffer += chunk
        if len(buffer) < total:
            return None
        self._bulk = None
        return BulkFrame(kind=kind, header=header, body=buffer)
