"""protocol.session: the service-naming first message of a member session."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.session import SERVICES, decode_session_open, encode_session_open


@pytest.mark.parametrize("service", SERVICES)
def test_round_trip(service: str) -> None:
    opened = decode_session_open(encode_session_open(service, b"\x00body"))
    assert (opened.service, opened.body) == (service, b"\x00body")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        msgpack.packb([1, 2]),
        msgpack.packb({"service": "gossip"}),
        msgpack.packb({"service": "gossip", "body": b"", "extra": 1}),
        msgpack.packb({"service": "Gossip!", "body": b""}),
        msgpack.packb({"service": 7, "body": b""}),
        msgpack.packb({"service": "gossip", "body": "text"}, use_bin_type=True),
        b"\x00" * 70000,
    ],
)
def test_malformed_is_the_peers_fault(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_session_open(data)


def test_local_misuse_is_ours() -> None:
    with pytest.raises(LocalProtocolError):
        encode_session_open("Not A Name")
    with pytest.raises(LocalProtocolError):
        encode_session_open("gossip", b"x" * 70000)


@settings(derandomize=True, database=None, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_remote_protocol_error(data: bytes) -> None:
    try:
        opened = decode_session_open(data)
    except RemoteProtocolError:
        return
    assert isinstance(opened.service, str) and isinstance(opened.body, bytes)
