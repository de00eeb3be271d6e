"""protocol.pipeline: the activation header and stage-open codecs, fed good and bad input."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import LocalProtocolError
from protocol.pipeline import (
    ActivationError,
    ActivationHeader,
    ActivationHeaderError,
    ActivationShapeError,
    BodyLengthError,
    MessageKind,
    RouteStage,
    StageOpen,
    UnsupportedDtypeError,
    UnsupportedVersionError,
    WireSampling,
    check_body,
    decode_header,
    decode_stage_open,
    encode_header,
    encode_stage_open,
    error_header,
)
from protocol.pipeline.activations import ACTIVATION_BYTES_MAX, DIM_MAX, RANK_MAX

SESSION = bytes(range(16))


def hidden(**changes: Any) -> ActivationHeader:
    header = ActivationHeader(
        kind=MessageKind.PREFILL,
        epoch=3,
        session_id=SESSION,
        step=2,
        first_position=512,
        dtype="bf16",
        shape=(1, 7, 4096),
        last_chunk=True,
    )
    return replace(header, **changes)


def wire(**changes: Any) -> dict[str, Any]:
    """The wire map of a valid prefill header, with ``changes`` applied (None deletes)."""
    raw: dict[str, Any] = {
        "v": 1, "kind": 1, "epoch": 3, "session": SESSION, "step": 2, "pos": 512,
        "dtype": "bf16", "shape": [1, 7, 4096], "last": True,
    }  # fmt: skip
    for key, value in changes.items():
        if value is None:
            raw.pop(key)
        else:
            raw[key] = value
    return raw


def pack(raw: Any) -> bytes:
    return msgpack.packb(raw, use_bin_type=True)


@pytest.mark.parametrize(
    "header",
    [
        hidden(),
        hidden(kind=MessageKind.DECODE, shape=(1, 1, 4096), last_chunk=False, dtype="f32"),
        hidden(dtype="i64", shape=(1, 300), last_chunk=False),
        hidden(
            kind=MessageKind.TOKEN, dtype="i64", shape=(1,), last_chunk=False,
            stage_times_s=(0.001, 0.25, 0.0),
        ),
        error_header(epoch=9, session_id=SESSION, step=4, code="stale_epoch", detail="x" * 5000),
    ],
)  # fmt: skip
def test_round_trip_per_kind(header: ActivationHeader) -> None:
    data = encode_header(header)
    assert decode_header(data) == header
    assert decode_header(bytearray(data)) == header


def test_error_detail_is_cut_to_its_bound() -> None:
    header = error_header(epoch=1, session_id=SESSION, step=0, code="internal", detail="y" * 5000)
    assert len(decode_header(encode_header(header)).error_detail) == 1024


def test_body_length_is_checked_exactly() -> None:
    header = hidden()
    assert header.body_bytes == 7 * 4096 * 2
    check_body(header, 7 * 4096 * 2)
    for wrong in (0, 7 * 4096 * 2 - 1, 7 * 4096 * 2 + 1, 7 * 4096 * 4):
        with pytest.raises(BodyLengthError, match="needs 57344"):
            check_body(header, wrong)


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        (b"", ActivationHeaderError, "not msgpack"),
        (b"\xc1", ActivationHeaderError, "not msgpack"),
        (pack([1, 2]), ActivationHeaderError, "must be a map"),
        (b"\x00" * 9000, ActivationHeaderError, "bytes >"),
        (pack(wire(v=2)), UnsupportedVersionError, "version 2"),
        (pack(wire(v=True)), UnsupportedVersionError, "version True"),
        (pack(wire(v=None)), UnsupportedVersionError, "version None"),
        (pack(wire(kind=9)), ActivationHeaderError, "unknown message kind 9"),
        (pack(wire(kind="1")), ActivationHeaderError, "kind: expected an int"),
        (pack(wire(last=None)), ActivationHeaderError, r"missing \['last'\]"),
        (pack(wire(extra=1)), ActivationHeaderError, r"unexpected \['extra'\]"),
        (pack(wire(times=[0.1])), ActivationHeaderError, r"unexpected \['times'\]"),
        (pack(wire(epoch=-1)), ActivationHeaderError, "epoch: expected an int"),
        (pack(wire(epoch=True)), ActivationHeaderError, "epoch: expected an int"),
        (pack(wire(step=1.5)), ActivationHeaderError, "step: expected an int"),
        (pack(wire(pos=1 << 25)), ActivationHeaderError, "pos: expected an int"),
        (pack(wire(session=b"short")), ActivationHeaderError, "session: expected 16 bytes"),
        (pack(wire(session="0123456789abcdef")), ActivationHeaderError, "session"),
        (pack(wire(last=1)), ActivationHeaderError, "last: expected a bool"),
        (pack(wire(dtype="f64")), UnsupportedDtypeError, "'f64' is not one of"),
        (pack(wire(dtype="object")), UnsupportedDtypeError, "is not one of"),
        (pack(wire(dtype=4)), UnsupportedDtypeError, "is not one of"),
        (pack(wire(shape=[])), ActivationShapeError, "1 to 4 dims"),
        (pack(wire(shape=[1] * (RANK_MAX + 1))), ActivationShapeError, "1 to 4 dims"),
        (pack(wire(shape=[1, -7, 2])), ActivationShapeError, "not an int in"),
        (pack(wire(shape=[1, DIM_MAX + 1, 2])), ActivationShapeError, "not an int in"),
        (pack(wire(shape=[1, True, 2])), ActivationShapeError, "not an int in"),
        (pack(wire(shape="1,7,4096")), ActivationShapeError, "1 to 4 dims"),
        (pack(wire(shape=[1, 1 << 16, 1 << 16])), ActivationShapeError, "bytes >"),
        (pack(wire(shape=[1, 0, 4096])), ActivationShapeError, "no empty dim"),
        (pack(wire(shape=[7, 4096])), ActivationShapeError, "i64 \\[B, T\\] or float"),
        (pack(wire(dtype="i64", shape=[1, 7, 2])), ActivationShapeError, "or float"),
        (pack(wire(kind=2, last=None)), ActivationShapeError, "one token, got T=7"),
        (
            pack(wire(kind=3, last=None, times=[0.1], shape=[1, 7, 4096])),
            ActivationShapeError,
            "token result is i64",
        ),
        (
            pack(wire(kind=3, last=None, times=[-0.1], dtype="i64", shape=[1])),
            ActivationHeaderError,
            "times: -0.1",
        ),
        (
            pack(wire(kind=3, last=None, times=[1], dtype="i64", shape=[1])),
            ActivationHeaderError,
            "times: 1 is not a finite float",
        ),
        (
            pack(wire(kind=4, last=None, code="Bad Code", detail="", dtype="i64", shape=[0])),
            ActivationHeaderError,
            "code:",
        ),
        (
            pack(wire(kind=4, last=None, code="internal", detail="", shape=[0])),
            ActivationShapeError,
            "error carries i64",
        ),
    ],
)
def test_each_malformed_header_is_a_specific_error(
    data: bytes, error: type[ActivationError], match: str
) -> None:
    with pytest.raises(error, match=match):
        decode_header(data)


def test_encoding_a_bad_header_is_our_fault() -> None:
    with pytest.raises(LocalProtocolError):
        encode_header(hidden(dtype="f64"))
    with pytest.raises(LocalProtocolError):
        encode_header(hidden(shape=(7, 4096)))


def test_largest_activation_is_accepted_and_one_more_element_is_not() -> None:
    elements = ACTIVATION_BYTES_MAX // 4
    decode_header(pack(wire(dtype="f32", shape=[1, elements // 8192, 8192])))
    with pytest.raises(ActivationShapeError):
        decode_header(pack(wire(dtype="f32", shape=[1, elements // 8192 + 1, 8192])))


dims = st.integers(min_value=1, max_value=64)
headers = st.one_of(
    st.builds(
        lambda kind, dtype, b, t, h, last, pos: hidden(
            kind=kind,
            dtype=dtype,
            shape=(b, 1 if kind == MessageKind.DECODE else t, h),
            last_chunk=last and kind == MessageKind.PREFILL,
            first_position=pos,
        ),
        st.sampled_from([MessageKind.PREFILL, MessageKind.DECODE]),
        st.sampled_from(["f32", "f16", "bf16"]),
        dims,
        dims,
        dims,
        st.booleans(),
        st.integers(min_value=0, max_value=1 << 20),
    ),
    st.builds(
        lambda times, step: hidden(
            kind=MessageKind.TOKEN,
            dtype="i64",
            shape=(1,),
            last_chunk=False,
            stage_times_s=tuple(times),
            step=step,
        ),
        st.lists(st.floats(min_value=0, max_value=1e6), max_size=8),
        st.integers(min_value=0, max_value=2**63 - 1),
    ),
)


@settings(derandomize=True, database=None, deadline=None)
@given(headers)
def test_any_valid_header_round_trips(header: ActivationHeader) -> None:
    assert decode_header(encode_header(header)) == header


@settings(derandomize=True, database=None, deadline=None, max_examples=300)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_activation_errors(data: bytes) -> None:
    with contextlib.suppress(ActivationError):
        decode_header(data)


@settings(derandomize=True, database=None, deadline=None, max_examples=300)
@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_a_flipped_byte_of_a_valid_header_decodes_or_is_refused(offset: int, xor: int) -> None:
    data = bytearray(encode_header(hidden()))
    data[offset % len(data)] ^= xor
    with contextlib.suppress(ActivationError):
        decode_header(bytes(data))


def opening(**changes: Any) -> StageOpen:
    opened = StageOpen(
        model_id="llama-tiny",
        epoch=4,
        session_id=SESSION,
        index=0,
        stages=(
            RouteStage(node_id="A" * 26, address="127.0.0.1:7001", first_layer=0,
                       last_layer_exclusive=2),
            RouteStage(node_id="B" * 26, address="[::1]:7002", first_layer=2,
                       last_layer_exclusive=4),
        ),
        context_tokens=2048,
        sampling=WireSampling(temperature=0.7, top_k=40, top_p=0.9, seed=7),
    )  # fmt: skip
    return replace(opened, **changes)


def test_stage_open_round_trips_and_hops() -> None:
    opened = opening()
    assert decode_stage_open(encode_stage_open(opened)) == opened
    following = decode_stage_open(encode_stage_open(opened.next_hop()))
    assert (following.index, following.stage.node_id, following.is_last) == (1, "B" * 26, True)


def open_wire(**changes: Any) -> bytes:
    raw = msgpack.unpackb(encode_stage_open(opening()), raw=False)
    raw.update(changes)
    return pack(raw)


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        (b"\xc1", ActivationHeaderError, "not msgpack"),
        (open_wire(v=2), UnsupportedVersionError, "version 2"),
        (open_wire(model="../etc"), ActivationHeaderError, "not a model id"),
        (open_wire(index=2), ActivationHeaderError, "index"),
        (open_wire(stages=[]), ActivationHeaderError, "1 to 256 stages"),
        (
            open_wire(stages=[["A", "h:1", 0, 2], ["B", "h:2", 3, 4]]),
            ActivationHeaderError,
            "do not continue at layer 2",
        ),
        (open_wire(stages=[["A", "h:1", 2, 2]]), ActivationHeaderError, "do not continue"),
        (open_wire(stages=[["", "h:1", 0, 2]]), ActivationHeaderError, "bad node id"),
        (open_wire(sampling={"temperature": 1.0}), ActivationHeaderError, "sampling"),
        (
            open_wire(sampling={"temperature": -1.0, "top_k": 0, "top_p": 1.0, "seed": 0}),
            ActivationHeaderError,
            "temperature",
        ),
        (open_wire(session=b"x"), ActivationHeaderError, "session"),
        (open_wire(extra=1), ActivationHeaderError, "keys"),
    ],
)
def test_malformed_stage_open_is_a_specific_error(
    data: bytes, error: type[ActivationError], match: str
) -> None:
    with pytest.raises(error, match=match):
        decode_stage_open(data)
