"""protocol.frames: length-prefixed messages and the typed frames above them.

Every input is fed whole and byte by byte; every bad input raises
``RemoteProtocolError`` (the peer's fault), every misuse ``LocalProtocolError``.
"""

from __future__ import annotations

import struct
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.frames import (
    BULK_BYTES_MAX_DEFAULT,
    BULK_CHUNK_BYTES,
    BULK_HEADER_BYTES_MAX,
    FRAME_BODY_BYTES_MAX,
    NOISE_MESSAGE_BYTES_MAX,
    BulkFrame,
    ControlFrame,
    DataFrame,
    EndOfStream,
    Frame,
    FrameDecoder,
    FrameType,
    MessageDecoder,
    bulk_plaintexts,
    encode_control,
    encode_data,
    encode_end_of_stream,
    frame_length_prefix,
)

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=300)


def framed(*messages: bytes) -> bytes:
    return b"".join(frame_length_prefix(len(m)) + m for m in messages)


def bulk_start(
    total: int, kind: int = 7, header: bytes = b"", header_len: int | None = None
) -> bytes:
    size = len(header) if header_len is None else header_len
    return bytes((FrameType.BULK,)) + struct.pack(">QBH", total, kind, size) + header


def drain(decoder: MessageDecoder) -> list[bytes]:
    messages = []
    while (message := decoder.next_message()) is not None:
        messages.append(message)
    return messages


def decode_messages(data: bytes, *, split: int | None) -> list[bytes]:
    """Feed ``data`` whole (``split=None``) or in ``split``-byte pieces."""
    decoder = MessageDecoder()
    step = (len(data) or 1) if split is None else split
    messages = []
    for start in range(0, len(data), step):
        decoder.feed(data[start : start + step])
        messages += drain(decoder)
    return messages


WHOLE_AND_BYTEWISE = pytest.mark.parametrize("split", [None, 1], ids=["whole", "bytewise"])


# -- MessageDecoder --------------------------------------------------------------------


@WHOLE_AND_BYTEWISE
def test_messages_come_out_as_sent(split: int | None) -> None:
    sent = [b"a", b"\x00" * 300, bytes(range(256)) * 255, b"z" * NOISE_MESSAGE_BYTES_MAX]
    assert decode_messages(framed(*sent), split=split) == sent


def test_a_partial_message_waits_and_stays_pending() -> None:
    decoder = MessageDecoder()
    data = framed(b"hello", b"world")
    decoder.feed(data[:1])
    assert decoder.next_message() is None
    decoder.feed(data[1:4])
    assert decoder.next_message() is None
    assert decoder.pending_bytes == 4
    decoder.feed(data[4:10])
    assert decoder.next_message() == b"hello"
    assert decoder.next_message() is None
    assert decoder.take_pending() == data[7:10]
    assert decoder.pending_bytes == 0


@WHOLE_AND_BYTEWISE
def test_zero_length_message_is_the_peers_fault(split: int | None) -> None:
    with pytest.raises(RemoteProtocolError, match="zero-length"):
        decode_messages(framed(b"ok") + b"\x00\x00" + framed(b"never"), split=split)


@pytest.mark.parametrize("length", [0, NOISE_MESSAGE_BYTES_MAX + 1, -1])
def test_length_prefix_refuses_impossible_lengths(length: int) -> None:
    with pytest.raises(LocalProtocolError):
        frame_length_prefix(length)


def test_length_prefix_is_big_endian() -> None:
    assert frame_length_prefix(1) == b"\x00\x01"
    assert frame_length_prefix(NOISE_MESSAGE_BYTES_MAX) == b"\xff\xff"


# -- FrameDecoder: single frames -------------------------------------------------------


@pytest.mark.parametrize(
    ("plaintext", "frame"),
    [
        (encode_data(b""), DataFrame(data=b"")),
        (encode_data(b"x" * FRAME_BODY_BYTES_MAX), DataFrame(data=b"x" * FRAME_BODY_BYTES_MAX)),
        (encode_control(b"\x81\xa1k\x01"), ControlFrame(payload=b"\x81\xa1k\x01")),
        (encode_end_of_stream(), EndOfStream()),
        (
            bulk_start(0, kind=9, header=b"meta"),
            BulkFrame(kind=9, header=b"meta", body=bytearray()),
        ),
    ],
    ids=["data-empty", "data-max", "control", "end", "bulk-empty"],
)
def test_each_frame_type_decodes(plaintext: bytes, frame: Frame) -> None:
    assert FrameDecoder().receive(plaintext) == frame


@pytest.mark.parametrize(
    ("plaintext", "match"),
    [
        (b"", "empty frame"),
        (b"\x00", "unknown frame type 0"),
        (b"\x05payload", "unknown frame type 5"),
        (b"\xff", "unknown frame type 255"),
        (encode_end_of_stream() + b"x", "END_OF_STREAM frame with a body"),
        (bytes((FrameType.BULK,)) + b"\x00" * 10, "truncated BULK frame header"),
        (bulk_start(10, header=b"abc", header_len=4), "header length 4 does not match 3"),
        (bulk_start(10, header=b"abcd", header_len=3), "header length 3 does not match 4"),
        (bulk_start(BULK_BYTES_MAX_DEFAULT + 1), "BULK payload of"),
        (bulk_start(2**64 - 1), "BULK payload of"),
        (bulk_start(10, header=b"h" * (BULK_HEADER_BYTES_MAX + 1)), "BULK header of"),
    ],
    ids=[
        "empty",
        "type-0",
        "type-5",
        "type-255",
        "end-with-body",
        "bulk-truncated-header",
        "bulk-header-short",
        "bulk-header-long",
        "bulk-over-default-max",
        "bulk-u64-max",
        "bulk-header-oversized",
    ],
)
def test_bad_frames_are_the_peers_fault(plaintext: bytes, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match):
        FrameDecoder().receive(plaintext)


def test_receiver_may_lower_the_bulk_limit() -> None:
    decoder = FrameDecoder(bulk_bytes_max=100)
    assert decoder.receive(bulk_start(100)) is None
    with pytest.raises(RemoteProtocolError, match="101 bytes > 100"):
        FrameDecoder(bulk_bytes_max=100).receive(bulk_start(101))


@pytest.mark.parametrize(
    "after",
    [encode_data(b"x"), encode_control(b"x"), encode_end_of_stream(), b"", bulk_start(0)],
    ids=["data", "control", "end", "empty", "bulk"],
)
def test_nothing_may_follow_end_of_stream(after: bytes) -> None:
    decoder = FrameDecoder()
    assert decoder.receive(encode_end_of_stream()) == EndOfStream()
    with pytest.raises(RemoteProtocolError, match="after END_OF_STREAM"):
        decoder.receive(after)


# -- FrameDecoder: bulk ----------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [1, BULK_CHUNK_BYTES - 1, BULK_CHUNK_BYTES, BULK_CHUNK_BYTES + 1, 3 * BULK_CHUNK_BYTES + 5],
)
def test_bulk_round_trip(size: int) -> None:
    body = bytes(i % 251 for i in range(size))
    plaintexts = list(bulk_plaintexts(200, b"tensor:0", memoryview(body)))
    assert len(plaintexts) == 1 + -(-size // BULK_CHUNK_BYTES)
    decoder = FrameDecoder()
    for plaintext in plaintexts[:-1]:
        assert decoder.receive(plaintext) is None
        assert decoder.in_bulk
    frame = decoder.receive(plaintexts[-1])
    assert frame == BulkFrame(kind=200, header=b"tensor:0", body=bytearray(body))
    assert isinstance(frame, BulkFrame) and isinstance(frame.body, bytearray)
    assert not decoder.in_bulk
    assert decoder.receive(encode_data(b"next")) == DataFrame(data=b"next")


def test_continuation_chunks_carry_no_type_byte() -> None:
    # A chunk that starts with the END_OF_STREAM byte is payload, not a frame.
    decoder = FrameDecoder()
    assert decoder.receive(bulk_start(2)) is None
    chunk = encode_end_of_stream() + b"\x00"
    assert decoder.receive(chunk) == BulkFrame(kind=7, header=b"", body=bytearray(chunk))


@pytest.mark.parametrize(
    ("total", "chunks", "bad"),
    [
        (10, [], b"x" * 9),
        (10, [], b"x" * 11),
        (10, [], b""),
        (BULK_CHUNK_BYTES + 10, [], b"x" * 10),
        (BULK_CHUNK_BYTES + 10, [b"x" * BULK_CHUNK_BYTES], b"x" * 11),
        (BULK_CHUNK_BYTES + 10, [b"x" * BULK_CHUNK_BYTES], b"x" * BULK_CHUNK_BYTES),
    ],
    ids=["short", "long", "empty", "first-short", "last-long", "last-full"],
)
def test_bulk_chunks_must_have_the_chunk_size(total: int, chunks: list[bytes], bad: bytes) -> None:
    decoder = FrameDecoder()
    assert decoder.receive(bulk_start(total)) is None
    for chunk in chunks:
        assert decoder.receive(chunk) is None
    with pytest.raises(RemoteProtocolError, match="BULK chunk of"):
        decoder.receive(bad)


def test_announcing_a_bulk_size_allocates_nothing() -> None:
    # Any node that completes Noise (no certificate needed) can send this 12-byte
    # frame before its Auth; the receiver must not reserve what it merely announces.
    decoder = FrameDecoder()
    tracemalloc.start()
    try:
        assert decoder.receive(bulk_start(BULK_BYTES_MAX_DEFAULT)) is None
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoder.in_bulk
    assert peak_bytes < 1 << 20


@pytest.mark.parametrize(
    ("kind", "header"),
    [(-1, b""), (256, b""), (0, b"h" * (BULK_HEADER_BYTES_MAX + 1))],
    ids=["kind-negative", "kind-256", "header-oversized"],
)
def test_bulk_encoder_refuses_misuse(kind: int, header: bytes) -> None:
    with pytest.raises(LocalProtocolError):
        next(bulk_plaintexts(kind, header, b"body"))


@pytest.mark.parametrize("encode", [encode_data, encode_control])
def test_oversized_bodies_are_local_errors(encode: object) -> None:
    assert callable(encode)
    encode(b"x" * FRAME_BODY_BYTES_MAX)
    with pytest.raises(LocalProtocolError):
        encode(b"x" * (FRAME_BODY_BYTES_MAX + 1))


# -- frames over messages, whole and byte by byte --------------------------------------


def stream_of(frames: list[tuple[str, bytes]]) -> tuple[bytes, list[Frame]]:
    """Wire bytes (unencrypted) for ``frames`` and the frames a decoder must return."""
    plaintexts: list[bytes] = []
    expected: list[Frame] = []
    for kind, body in frames:
        if kind == "data":
            plaintexts.append(encode_data(body))
            expected.append(DataFrame(data=body))
        elif kind == "control":
            plaintexts.append(encode_control(body))
            expected.append(ControlFrame(payload=body))
        else:
            plaintexts += bulk_plaintexts(3, body[:16], body)
            expected.append(BulkFrame(kind=3, header=body[:16], body=bytearray(body)))
    plaintexts.append(encode_end_of_stream())
    expected.append(EndOfStream())
    return framed(*plaintexts), expected


def decode_stream(data: bytes, *, split: int | None) -> list[Frame]:
    frames = FrameDecoder()
    decoded = []
    for message in decode_messages(data, split=split):
        frame = frames.receive(message)
        if frame is not None:
            decoded.append(frame)
    return decoded


@WHOLE_AND_BYTEWISE
def test_a_mixed_stream_decodes_whole_and_bytewise(split: int | None) -> None:
    data, expected = stream_of(
        [("data", b"hi"), ("bulk", b"b" * (BULK_CHUNK_BYTES + 3)), ("control", b"c"), ("data", b"")]
    )
    assert decode_stream(data, split=split) == expected


frame_specs = st.lists(
    st.tuples(st.sampled_from(["data", "control", "bulk"]), st.binary(max_size=300)), max_size=6
)


@FUZZ
@given(frames=frame_specs, split=st.integers(min_value=1, max_value=64))
def test_any_frame_sequence_round_trips_in_any_split(
    frames: list[tuple[str, bytes]], split: int
) -> None:
    data, expected = stream_of(frames)
    assert decode_stream(data, split=split) == expected
    assert decode_stream(data, split=None) == expected


# -- fuzz: random bytes only ever raise RemoteProtocolError ----------------------------


def _messages_or_error(data: bytes, split: int | None) -> tuple[list[bytes], bool]:
    try:
        return decode_messages(data, split=split), False
    except RemoteProtocolError:
        return [], True


@FUZZ
@given(data=st.binary(max_size=2000), split=st.integers(min_value=1, max_value=50))
def test_message_decoder_on_random_bytes(data: bytes, split: int) -> None:
    # Same outcome in any split: the messages, or the peer's fault.
    assert _messages_or_error(data, split) == _messages_or_error(data, None)


plaintexts = st.one_of(
    st.binary(max_size=64),
    st.builds(
        lambda kind, body: bytes((kind,)) + body,
        st.integers(min_value=0, max_value=6),
        st.binary(max_size=64),
    ),
    st.builds(
        lambda total, kind, header, extra: bulk_start(total, kind, header) + extra,
        st.one_of(st.integers(0, 3 * BULK_CHUNK_BYTES), st.integers(0, 2**64 - 1)),
        st.integers(0, 255),
        st.binary(max_size=16),
        st.binary(max_size=2),
    ),
)


@FUZZ
@given(messages=st.lists(plaintexts, max_size=12), bulk_bytes_max=st.sampled_from([0, 50, None]))
def test_frame_decoder_on_random_messages(
    messages: list[bytes], bulk_bytes_max: int | None
) -> None:
    decoder = (
        FrameDecoder() if bulk_bytes_max is None else FrameDecoder(bulk_bytes_max=bulk_bytes_max)
    )
    try:
        for message in messages:
            frame = decoder.receive(message)
            assert frame is None or isinstance(
                frame, DataFrame | ControlFrame | BulkFrame | EndOfStream
            )
    except RemoteProtocolError:
        pass
