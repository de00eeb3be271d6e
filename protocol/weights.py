"""The weights service's wire format: manifests, requests, chunk headers, errors.

Theory of operation
-------------------
A node that lacks a checkpoint's files fetches them from a member that has them, over
an authenticated secure session with service ``weights``.  Every message is a strict
msgpack map with a version ``v`` and exactly the keys listed:

=====================  ==============================================================
session-open body      ``{"v", "op": "manifest", "model"}`` or
                       ``{"v", "op": "read", "model", "file", "offset", "length"}``
manifest reply         BULK frame, kind :data:`BULK_KIND_MANIFEST`, empty header,
                       body ``{"v", "model", "files": [[name, size, sha256], ...]}``
read reply             BULK frames of kind :data:`BULK_KIND_DATA`, each with header
                       ``{"v", "offset"}`` and up to :data:`CHUNK_BYTES_MAX` bytes of
                       the file from that offset, in order, ``length`` bytes in all
                       (less only at the end of the file); then END_OF_STREAM
error reply            a CONTROL frame ``{"v", "error": code, "detail"}``, code one of
                       :data:`ERROR_CODES`; then END_OF_STREAM
=====================  ==============================================================

One read asks for at most :data:`READ_BYTES_MAX` bytes, so a session stays short (the
peer listener bounds each session's duration) and a fetch resumes at a chunk boundary
by asking for the next range.  The manifest lists the checkpoint's files (flat:
names never contain a path separator) sorted by name; its *digest* is the SHA-256 of
its encoding, which names one exact version of a checkpoint.

File names are checked on both sides: never empty, ``.`` or ``..``, never a path
separator, a NUL or a leading dot (hidden and partial files are never served), at
most :data:`FILE_NAME_CHARS_MAX` characters.  A name like ``../x`` or ``/etc/passwd``
is therefore a protocol error before any file is opened.

Errors: bad input from the peer raises :class:`~protocol.errors.RemoteProtocolError`;
encoding something invalid raises :class:`~protocol.errors.LocalProtocolError`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import msgpack

from protocol.errors import LocalProtocolError, RemoteProtocolError

WEIGHTS_VERSION = 1
BULK_KIND_MANIFEST = 16
BULK_KIND_DATA = 17
"""BULK frame kinds of the weights service (scoped to its sessions)."""

MODEL_ID_CHARS_MAX = 128
FILE_NAME_CHARS_MAX = 255
"""The usual file-name limit of Linux file systems."""
MANIFEST_FILES_MAX = 4096
"""Sharded checkpoints have hundreds of files at most."""
FILE_BYTES_MAX = 1 << 50
"""1 PiB: no single checkpoint file comes near it."""
SHA256_BYTES = 32
READ_BYTES_MAX = 64 << 20
"""Most bytes one read request asks for (a short session even on slow links)."""
CHUNK_BYTES_MAX = 1 << 20
"""Most file bytes in one BULK frame."""
MESSAGE_BYTES_MAX = 1 << 20
"""Longest manifest, request, chunk header or error message."""
DETAIL_CHARS_MAX = 512

OP_MANIFEST = "manifest"
OP_READ = "read"

ERROR_UNKNOWN_MODEL = "unknown_model"
ERROR_UNKNOWN_FILE = "unknown_file"
ERROR_BAD_REQUEST = "bad_request"
ERROR_UNAVAILABLE = "unavailable"
ERROR_CODES = (ERROR_UNKNOWN_MODEL, ERROR_UNKNOWN_FILE, ERROR_BAD_REQUEST, ERROR_UNAVAILABLE)
"""Append only."""

_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def file_name_problem(name: object) -> str | None:
    """Why ``name`` is not a servable checkpoint file name, or None if it is one."""
    if not isinstance(name, str):
        return "a file name must be a string"
    if not 0 < len(name) <= FILE_NAME_CHARS_MAX:
        return f"a file name has 1 to {FILE_NAME_CHARS_MAX} chars"
    if "/" in name or "\\" in name or "\x00" in name:
        return f"file name {name[:60]!r} contains a path separator or NUL"
    if name.startswith("."):
        return f"file name {name[:60]!r} starts with a dot"
    return None


def model_id_problem(model_id: object) -> str | None:
    """Why ``model_id`` is not a model id, or None if it is one."""
    if not isinstance(model_id, str) or not 0 < len(model_id) <= MODEL_ID_CHARS_MAX:
        return f"a model id is a string of 1 to {MODEL_ID_CHARS_MAX} chars"
    if not _MODEL_RE.match(model_id):
        return f"model id {model_id[:60]!r} has characters other than letters, digits, . _ -"
    return None


def _local_check(problem: str | None) -> None:
    if problem is not None:
        raise LocalProtocolError(problem)


def _remote_check(problem: str | None) -> None:
    if problem is not None:
        raise RemoteProtocolError(problem)


@dataclass(frozen=True, kw_only=True)
class FileEntry:
    """One file of a checkpoint."""

    name: str
    size_bytes: int
    sha256: bytes
    """SHA-256 of the whole file (32 bytes)."""


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """The files of one checkpoint, sorted by name."""

    model_id: str
    files: tuple[FileEntry, ...]

    def file(self, name: str) -> FileEntry | None:
        return next((entry for entry in self.files if entry.name == name), None)

    @property
    def total_bytes(self) -> int:
        return sum(entry.size_bytes for entry in self.files)

    def digest(self) -> bytes:
        """SHA-256 of the encoded manifest: one exact version of the checkpoint."""
        return hashlib.sha256(encode_manifest(self)).digest()


@dataclass(frozen=True, kw_only=True)
class ManifestRequest:
    model_id: str


@dataclass(frozen=True, kw_only=True)
class ReadRequest:
    model_id: str
    file_name: str
    offset: int
    """First byte wanted."""
    length: int
    """Bytes wanted, 1 to READ_BYTES_MAX (fewer arrive only at the end of the file)."""


Request = ManifestRequest | ReadRequest


@dataclass(frozen=True, kw_only=True)
class WeightsError:
    code: str
    """One of :data:`ERROR_CODES`."""
    detail: str


def _pack(wire: dict[str, Any]) -> bytes:
    packed: bytes = msgpack.packb(wire, use_bin_type=True)
    if len(packed) > MESSAGE_BYTES_MAX:
        raise LocalProtocolError(f"weights message of {len(packed)} bytes > {MESSAGE_BYTES_MAX}")
    return packed


def _unpack(data: bytes, what: str, keys: frozenset[str] | tuple[frozenset[str], ...]) -> Any:
    if len(data) > MESSAGE_BYTES_MAX:
        raise RemoteProtocolError(f"{what} of {len(data)} bytes > {MESSAGE_BYTES_MAX}")
    try:
        raw = msgpack.unpackb(
            bytes(data), raw=False, strict_map_key=True, use_list=True, max_ext_len=0
        )
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
        raise RemoteProtocolError(f"{what} is not msgpack: {exc}") from exc
    if not isinstance(raw, dict):
        raise RemoteProtocolError(f"{what} must be a map")
    version = raw.get("v")
    if isinstance(version, bool) or version != WEIGHTS_VERSION:
        raise RemoteProtocolError(f"{what} version {version!r:.20} is not {WEIGHTS_VERSION}")
    allowed = keys if isinstance(keys, tuple) else (keys,)
    if frozenset(raw) not in allowed:
        expected = " or ".join(str(sorted(k)) for k in allowed)
        raise RemoteProtocolError(f"{what} keys {sorted(map(str, raw))} are not {expected}")
    return raw


def _uint(value: object, where: str, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise RemoteProtocolError(f"{where}: expected an int in [0, {high}], got {value!r:.40}")
    return value


# -- manifests ------------------------------------------------------------------

_MANIFEST_KEYS = frozenset({"v", "model", "files"})


def encode_manifest(manifest: Manifest) -> bytes:
    _local_check(model_id_problem(manifest.model_id))
    if len(manifest.files) > MANIFEST_FILES_MAX:
        raise LocalProtocolError(f"a manifest lists at most {MANIFEST_FILES_MAX} files")
    names = [entry.name for entry in manifest.files]
    if names != sorted(set(names)):
        raise LocalProtocolError("manifest files must be sorted by name without repeats")
    for entry in manifest.files:
        _local_check(file_name_problem(entry.name))
        if not 0 <= entry.size_bytes <= FILE_BYTES_MAX or len(entry.sha256) != SHA256_BYTES:
            raise LocalProtocolError(f"manifest entry {entry.name!r} has a bad size or hash")
    files = [[entry.name, entry.size_bytes, entry.sha256] for entry in manifest.files]
    return _pack({"v": WEIGHTS_VERSION, "model": manifest.model_id, "files": files})


def decode_manifest(data: bytes) -> Manifest:
    raw = _unpack(data, "manifest", _MANIFEST_KEYS)
    _remote_check(model_id_problem(raw["model"]))
    files = raw["files"]
    if not isinstance(files, list) or len(files) > MANIFEST_FILES_MAX:
        raise RemoteProtocolError(f"manifest files: expected a list of <= {MANIFEST_FILES_MAX}")
    entries: list[FileEntry] = []
    for index, item in enumerate(files):
        where = f"manifest files[{index}]"
        if not isinstance(item, list) or len(item) != 3:
            raise RemoteProtocolError(f"{where}: expected [name, size, sha256]")
        name, size, digest = item
        _remote_check(file_name_problem(name))
        if not isinstance(digest, bytes) or len(digest) != SHA256_BYTES:
            raise RemoteProtocolError(f"{where}: sha256 must be {SHA256_BYTES} bytes")
        if entries and name <= entries[-1].name:
            raise RemoteProtocolError(f"{where}: files must be sorted by name without repeats")
        entries.append(
            FileEntry(name=name, size_bytes=_uint(size, f"{where} size", FILE_BYTES_MAX),
                      sha256=digest)
        )  # fmt: skip
    return Manifest(model_id=raw["model"], files=tuple(entries))


# -- requests -------------------------------------------------------------------

_MANIFEST_REQUEST_KEYS = frozenset({"v", "op", "model"})
_READ_REQUEST_KEYS = frozenset({"v", "op", "model", "file", "offset", "length"})


def encode_request(request: Request) -> bytes:
    _local_check(model_id_problem(request.model_id))
    if isinstance(request, ManifestRequest):
        return _pack({"v": WEIGHTS_VERSION, "op": OP_MANIFEST, "model": request.model_id})
    _local_check(file_name_problem(request.file_name))
    if not 0 <= request.offset <= FILE_BYTES_MAX or not 0 < request.length <= READ_BYTES_MAX:
        raise LocalProtocolError(
            f"read of {request.length} bytes at {request.offset}: length must be 1 to "
            f"{READ_BYTES_MAX}"
        )
    return _pack(
        {
            "v": WEIGHTS_VERSION,
            "op": OP_READ,
            "model": request.model_id,
            "file": request.file_name,
            "offset": request.offset,
            "length": request.length,
        }
    )


def decode_request(data: bytes) -> Request:
    raw = _unpack(data, "weights request", (_MANIFEST_REQUEST_KEYS, _READ_REQUEST_KEYS))
    _remote_check(model_id_problem(raw["model"]))
    op = raw["op"]
    if op == OP_MANIFEST and len(raw) == len(_MANIFEST_REQUEST_KEYS):
        return ManifestRequest(model_id=raw["model"])
    if op != OP_READ or len(raw) != len(_READ_REQUEST_KEYS):
        raise RemoteProtocolError(f"weights request op {op!r:.20} does not match its keys")
    _remote_check(file_name_problem(raw["file"]))
    length = _uint(raw["length"], "length", READ_BYTES_MAX)
    if length == 0:
        raise RemoteProtocolError("length: a read asks for at least one byte")
    return ReadRequest(
        model_id=raw["model"],
        file_name=raw["file"],
        offset=_uint(raw["offset"], "offset", FILE_BYTES_MAX),
        length=length,
    )


# -- chunk headers and errors -----------------------------------------------------

_CHUNK_KEYS = frozenset({"v", "offset"})
_ERROR_KEYS = frozenset({"v", "error", "detail"})


def encode_chunk_header(offset: int) -> bytes:
    if not 0 <= offset <= FILE_BYTES_MAX:
        raise LocalProtocolError(f"chunk offset {offset} out of range")
    return _pack({"v": WEIGHTS_VERSION, "offset": offset})


def decode_chunk_header(data: bytes) -> int:
    """The file offset a data chunk starts at."""
    raw = _unpack(data, "chunk header", _CHUNK_KEYS)
    return _uint(raw["offset"], "chunk offset", FILE_BYTES_MAX)


def encode_error(error: WeightsError) -> bytes:
    if error.code not in ERROR_CODES:
        raise LocalProtocolError(f"unknown weights error code {error.code!r}")
    detail = error.detail[:DETAIL_CHARS_MAX]
    return _pack({"v": WEIGHTS_VERSION, "error": error.code, "detail": detail})


def decode_error(data: bytes) -> WeightsError:
    raw = _unpack(data, "weights error", _ERROR_KEYS)
    code, detail = raw["error"], raw["detail"]
    if code not in ERROR_CODES:
        raise RemoteProtocolError(f"unknown weights error code {code!r:.40}")
    if not isinstance(detail, str) or len(detail) > DETAIL_CHARS_MAX:
        raise RemoteProtocolError(f"error detail must be a string of <= {DETAIL_CHARS_MAX}")
    return WeightsError(code=code, detail=detail)
