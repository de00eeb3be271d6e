"""Fetching checkpoint files from members: resumable, verified, retried elsewhere.

Theory of operation
-------------------
:meth:`Fetcher.fetch_file` downloads one file of a manifest into a directory:

1. The bytes go to ``.<name>.part`` in the destination directory.  If that file
   already exists (an earlier attempt was cut), the download resumes from its length.
2. The file is asked for in ranges of ``RANGE_BYTES_DEFAULT`` bytes (at most the
   protocol's ``READ_BYTES_MAX``), one session per range; every chunk must start
   exactly where the previous one ended and stay within the manifest's size, or the
   peer misbehaved.
3. When the ``.part`` file reaches the manifest's size it is flushed to disk and its
   SHA-256 computed.  A match renames it to its final name (atomic ``rename`` in the
   same directory, then the directory is fsynced): a file under its final name is
   always a verified one.  A mismatch is a :class:`CorruptTransferError`: the
   ``.part`` file is deleted and the next source is tried from byte 0.
4. A cut connection, a timeout or a protocol error is retried against the same
   source, resuming from the ``.part`` length, up to ``ATTEMPTS_PER_SOURCE`` times;
   then the next source is tried (still resuming: the bytes so far are checked by
   the final hash whoever sent them).  A peer's error reply moves to the next source
   at once.  When every source failed, :class:`FetchFailedError` lists why.

Progress: after each chunk, ``on_progress(FetchProgress)`` is called (bytes done and
total of the file); the latest progress of each file is kept in
:attr:`Fetcher.progress` for the API.

Which bytes are right is decided by the manifest the caller passes; see
:mod:`vramancer_node.weightswiring` for how it is chosen from the members' manifests.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from crypto.noise.errors import NoiseError
from protocol.errors import RemoteProtocolError
from protocol.frames import BulkFrame, ControlFrame, EndOfStream
from protocol.session import SERVICE_WEIGHTS
from protocol.weights import (
    BULK_KIND_DATA,
    BULK_KIND_MANIFEST,
    CHUNK_BYTES_MAX,
    READ_BYTES_MAX,
    FileEntry,
    Manifest,
    ManifestRequest,
    ReadRequest,
    decode_chunk_header,
    decode_error,
    decode_manifest,
    encode_request,
)
from vramancer_node.atomic import fsync_directory
from vramancer_node.logs import get_logger
from vramancer_node.net.handshake import HandshakeFailed
from vramancer_node.net.securestream import SecureStream
from vramancer_node.peering import PeerService
from vramancer_node.weights.errors import (
    CorruptTransferError,
    FetchFailedError,
    PeerRefusedError,
)
from vramancer_node.weights.manifest import sha256_file

log = get_logger("weights")

RANGE_BYTES_DEFAULT = 16 << 20
"""Bytes asked for per session: 13 s on a 10 Mbit/s link, well inside the peer
listener's session limit; the handshake per range is noise next to it."""
ATTEMPTS_PER_SOURCE = 3
"""Tries of one source after cut connections before moving to the next."""
PART_SUFFIX = ".part"
TRANSFER_ERRORS = (
    HandshakeFailed,
    RemoteProtocolError,
    NoiseError,
    OSError,
    trio.TooSlowError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)
"""Failures of one attempt that a retry may cure."""


@dataclass(frozen=True, kw_only=True)
class FetchProgress:
    model_id: str
    file_name: str
    bytes_done: int
    bytes_total: int
    source: str
    """Address of the member the bytes come from."""


def part_path(directory: Path, file_name: str) -> Path:
    """The hidden partial file of ``file_name`` (never served: it starts with a dot)."""
    return directory / f".{file_name}{PART_SUFFIX}"


class Fetcher:
    """Downloads checkpoint files from members over ``weights`` sessions."""

    def __init__(
        self,
        peers: PeerService,
        on_progress: Callable[[FetchProgress], None] | None = None,
        *,
        read_bytes_max: int = RANGE_BYTES_DEFAULT,
    ) -> None:
        if not 0 < read_bytes_max <= READ_BYTES_MAX:
            raise ValueError(f"read_bytes_max must be in [1, {READ_BYTES_MAX}]")
        self._peers = peers
        self._on_progress = on_progress
        self._read_bytes_max = read_bytes_max
        self.progress: dict[tuple[str, str], FetchProgress] = {}
        self.bytes_fetched = 0
        self.corrupt_transfers = 0

    async def fetch_manifest(self, address: str, model_id: str) -> Manifest:
        """The manifest ``address`` holds for ``model_id`` (PeerRefusedError if none)."""
        request = encode_request(ManifestRequest(model_id=model_id))
        async with self._peers.open_session(address, SERVICE_WEIGHTS, request) as (_peer, secure):
            frame = await secure.receive_frame()
            if isinstance(frame, ControlFrame):
                error = decode_error(frame.payload)
                raise PeerRefusedError(address, error.code, error.detail)
            if not isinstance(frame, BulkFrame) or frame.kind != BULK_KIND_MANIFEST:
                raise RemoteProtocolError(f"expected a manifest, got {type(frame).__name__}")
            manifest = decode_manifest(bytes(frame.body))
        if manifest.model_id != model_id:
            raise RemoteProtocolError(f"asked for {model_id!r}, got {manifest.model_id!r}")
        return manifest

    async def fetch_file(
        self, model_id: str, entry: FileEntry, sources: Sequence[str], directory: Path
    ) -> Path:
        """Download ``entry`` into ``directory`` from the first of ``sources`` that
        delivers the right bytes; return the final path."""
        final = directory / entry.name
        part = part_path(directory, entry.name)
        attempts: list[str] = []
        for address in sources:
            for _ in range(ATTEMPTS_PER_SOURCE):
                try:
                    await self._download(model_id, entry, address, part)
                    await self._install(entry, part, final, address)
                    return final
                except CorruptTransferError as exc:
                    self.corrupt_transfers += 1
                    attempts.append(f"{address}: {exc}")
                    log.warning("corrupt transfer refused", extra={"detail": str(exc)})
                    break
                except PeerRefusedError as exc:
                    attempts.append(str(exc))
                    break
                except TRANSFER_ERRORS as exc:
                    attempts.append(f"{address}: {type(exc).__name__}: {exc}")
                    log.warning(
                        "weights transfer interrupted; resuming",
                        extra={"source": address, "file": entry.name, "detail": str(exc)},
                    )
        raise FetchFailedError(model_id, entry.name, attempts)

    async def _download(self, model_id: str, entry: FileEntry, address: str, part: Path) -> None:
        """Append to ``part`` until it holds ``entry.size_bytes`` bytes."""
        size = await trio.to_thread.run_sync(_part_size, part)
        if size > entry.size_bytes:  # not ours to resume: start over
            await trio.to_thread.run_sync(part.unlink)
            size = 0
        file = await trio.open_file(part, "ab")
        async with file:
            while size < entry.size_bytes:
                length = min(self._read_bytes_max, entry.size_bytes - size)
                request = ReadRequest(
                    model_id=model_id, file_name=entry.name, offset=size, length=length
                )
                async with self._peers.open_session(
                    address, SERVICE_WEIGHTS, encode_request(request)
                ) as (_peer, secure):
                    size = await self._receive_range(secure, entry, model_id, address, file, size)
                if size < request.offset + length:
                    raise RemoteProtocolError(
                        f"{address} ended a read at {size}, before {request.offset + length}"
                    )
            await file.flush()
            await trio.to_thread.run_sync(os.fsync, file.fileno())

    async def _receive_range(
        self,
        secure: SecureStream,
        entry: FileEntry,
        model_id: str,
        address: str,
        file: Any,
        size: int,
    ) -> int:
        """Write the chunks of one read to ``file``; return the new size."""
        while True:
            frame = await secure.receive_frame()
            if isinstance(frame, EndOfStream):
                return size
            if isinstance(frame, ControlFrame):
                error = decode_error(frame.payload)
                raise PeerRefusedError(address, error.code, error.detail)
            if not isinstance(frame, BulkFrame) or frame.kind != BULK_KIND_DATA:
                raise RemoteProtocolError(f"expected file bytes, got {type(frame).__name__}")
            offset, count = decode_chunk_header(frame.header), len(frame.body)
            if offset != size or not 0 < count <= CHUNK_BYTES_MAX:
                raise RemoteProtocolError(f"chunk of {count} bytes at {offset}, expected {size}")
            if size + count > entry.size_bytes:
                raise CorruptTransferError(
                    f"{entry.name} from {address}: more than the manifest's "
                    f"{entry.size_bytes} bytes"
                )
            await file.write(frame.body)
            size += count
            self.bytes_fetched += count
            self._progress(model_id, entry, size, address)

    async def _install(self, entry: FileEntry, part: Path, final: Path, address: str) -> None:
        """Verify ``part`` against the manifest and move it into place."""
        if not part.exists():  # an empty file needed no download
            await trio.to_thread.run_sync(part.touch)
        digest = await trio.to_thread.run_sync(sha256_file, part)
        if digest != entry.sha256:
            with contextlib.suppress(FileNotFoundError):
                await trio.to_thread.run_sync(part.unlink)
            raise CorruptTransferError(
                f"{entry.name} from {address}: SHA-256 {digest.hex()[:16]}... does not match "
                f"the manifest's {entry.sha256.hex()[:16]}...; the partial file was discarded"
            )
        await trio.to_thread.run_sync(os.replace, part, final)
        await trio.to_thread.run_sync(fsync_directory, final.parent)
        log.info("fetched weights file", extra={"file": entry.name, "bytes": entry.size_bytes})

    def _progress(self, model_id: str, entry: FileEntry, done: int, address: str) -> None:
        progress = FetchProgress(
            model_id=model_id,
            file_name=entry.name,
            bytes_done=done,
            bytes_total=entry.size_bytes,
            source=address,
        )
        self.progress[(model_id, entry.name)] = progress
        if self._on_progress is not None:
            self._on_progress(progress)


def _part_size(part: Path) -> int:
    try:
        return part.stat().st_size
    except FileNotFoundError:
        return 0
