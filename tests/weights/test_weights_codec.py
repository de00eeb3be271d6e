"""The weights wire format: round trips, and each malformed input a specific error."""

from __future__ import annotations

import hashlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.weights import (
    CHUNK_BYTES_MAX,
    ERROR_UNKNOWN_FILE,
    FILE_NAME_CHARS_MAX,
    READ_BYTES_MAX,
    FileEntry,
    Manifest,
    ManifestRequest,
    ReadRequest,
    WeightsError,
    decode_chunk_header,
    decode_error,
    decode_manifest,
    decode_request,
    encode_chunk_header,
    encode_error,
    encode_manifest,
    encode_request,
    file_name_problem,
)

SHA = hashlib.sha256(b"x").digest()
TRAVERSALS = ["../x", "..", ".", "/etc/passwd", "a/b", "a\\b", "x\x00y", ".hidden", ".x.part", ""]

names = st.text(
    alphabet=st.characters(blacklist_characters="/\\\x00", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=40,
).filter(lambda name: not name.startswith("."))


@given(st.dictionaries(names, st.integers(0, 1 << 50), max_size=20))
def test_manifest_round_trip(sizes: dict[str, int]) -> None:
    files = tuple(
        FileEntry(name=name, size_bytes=size, sha256=hashlib.sha256(name.encode()).digest())
        for name, size in sorted(sizes.items())
    )
    manifest = Manifest(model_id="Llama-3.2-1B", files=files)
    data = encode_manifest(manifest)
    assert decode_manifest(data) == manifest
    assert manifest.digest() == hashlib.sha256(data).digest()


@given(names, st.integers(0, 1 << 50), st.integers(1, READ_BYTES_MAX))
def test_request_round_trip(name: str, offset: int, length: int) -> None:
    read = ReadRequest(model_id="m", file_name=name, offset=offset, length=length)
    assert decode_request(encode_request(read)) == read
    assert decode_request(encode_request(ManifestRequest(model_id="m"))) == ManifestRequest(
        model_id="m"
    )


def test_chunk_header_and_error_round_trip() -> None:
    assert decode_chunk_header(encode_chunk_header(CHUNK_BYTES_MAX * 3)) == CHUNK_BYTES_MAX * 3
    error = WeightsError(code=ERROR_UNKNOWN_FILE, detail="no such file")
    assert decode_error(encode_error(error)) == error


@pytest.mark.parametrize("name", TRAVERSALS)
def test_path_traversal_names_are_refused_both_ways(name: str) -> None:
    assert file_name_problem(name) is not None
    with pytest.raises(LocalProtocolError):
        encode_request(ReadRequest(model_id="m", file_name=name, offset=0, length=1))
    wire = {"v": 1, "op": "read", "model": "m", "file": name, "offset": 0, "length": 1}
    with pytest.raises(RemoteProtocolError, match=r"file name|separator|dot"):
        decode_request(msgpack.packb(wire))
    manifest = {"v": 1, "model": "m", "files": [[name, 1, SHA]]}
    with pytest.raises(RemoteProtocolError, match=r"file name|separator|dot"):
        decode_manifest(msgpack.packb(manifest))


def test_long_names_are_refused() -> None:
    assert file_name_problem("a" * FILE_NAME_CHARS_MAX) is None
    assert file_name_problem("a" * (FILE_NAME_CHARS_MAX + 1)) is not None


READ = {"v": 1, "op": "read", "model": "m", "file": "f", "offset": 0, "length": 10}

BAD_REQUESTS: list[tuple[object, str]] = [
    (b"\xc1", "not msgpack"),
    ([1, 2], "must be a map"),
    ({**READ, "v": 2}, "version"),
    ({**READ, "v": True}, "version"),
    ({**READ, "extra": 1}, "keys"),
    ({"v": 1, "op": "read", "model": "m"}, "does not match"),
    ({**READ, "op": "manifest"}, "does not match"),
    ({**READ, "op": "delete"}, "does not match"),
    ({**READ, "model": "../m"}, "model id"),
    ({**READ, "model": 5}, "model id"),
    ({**READ, "offset": -1}, "offset"),
    ({**READ, "offset": True}, "offset"),
    ({**READ, "length": 0}, "at least one byte"),
    ({**READ, "length": READ_BYTES_MAX + 1}, "length"),
    ({**READ, "file": 7}, "string"),
]


@pytest.mark.parametrize(("wire", "match"), BAD_REQUESTS)
def test_bad_requests(wire: object, match: str) -> None:
    data = wire if isinstance(wire, bytes) else msgpack.packb(wire)
    with pytest.raises(RemoteProtocolError, match=match):
        decode_request(data)


BAD_MANIFESTS: list[tuple[object, str]] = [
    ({"v": 1, "model": "m", "files": [["a", 1, b"short"]]}, "sha256"),
    ({"v": 1, "model": "m", "files": [["b", 1, SHA], ["a", 1, SHA]]}, "sorted"),
    ({"v": 1, "model": "m", "files": [["a", 1, SHA], ["a", 1, SHA]]}, "sorted"),
    ({"v": 1, "model": "m", "files": [["a", -5, SHA]]}, "size"),
    ({"v": 1, "model": "m", "files": [["a", 1]]}, "expected"),
    ({"v": 1, "model": "m", "files": "a"}, "list"),
    ({"v": 1, "model": "m"}, "keys"),
]


@pytest.mark.parametrize(("wire", "match"), BAD_MANIFESTS)
def test_bad_manifests(wire: object, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match):
        decode_manifest(msgpack.packb(wire))


def test_bad_errors_and_headers() -> None:
    with pytest.raises(RemoteProtocolError, match="unknown weights error"):
        decode_error(msgpack.packb({"v": 1, "error": "boom", "detail": ""}))
    with pytest.raises(RemoteProtocolError, match="chunk offset"):
        decode_chunk_header(msgpack.packb({"v": 1, "offset": "0"}))
    with pytest.raises(LocalProtocolError, match="sorted"):
        encode_manifest(
            Manifest(
                model_id="m",
                files=(
                    FileEntry(name="b", size_bytes=1, sha256=SHA),
                    FileEntry(name="a", size_bytes=1, sha256=SHA),
                ),
            )
        )
