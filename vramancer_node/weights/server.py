"""The ``weights`` service: answer manifest and ranged read requests from members.

Theory of operation
-------------------
A member opens a session with service ``weights`` and one request in the session-open
body (:mod:`protocol.weights`).  A manifest request is answered with the model's
manifest in one BULK frame; a read request with the file's bytes from ``offset``, in
BULK frames of at most ``CHUNK_BYTES_MAX`` bytes, each headed by its offset.  The
session then ends (END_OF_STREAM).  Only files listed in the model's manifest are
served, opened by their checked name inside the model's directory.

Resource handling
-----------------
At most ``READS_CONCURRENT_MAX`` reads run at once (each holds an open file and a
worker thread per chunk); further sessions wait their turn.  Counters (requests by
outcome, bytes served) are in :attr:`WeightsServer.stats`.

Error handling
--------------
A malformed request, an unknown model or file, or an offset past the end gets an
error reply (a CONTROL frame with the code) and the session ends; a peer that sent
garbage is also logged.  A file that vanished or cannot be read is ``unavailable``.
Nothing a peer sends stops the service.
"""

from __future__ import annotations

import collections

import trio

from protocol.errors import RemoteProtocolError
from protocol.weights import (
    BULK_KIND_DATA,
    BULK_KIND_MANIFEST,
    CHUNK_BYTES_MAX,
    ERROR_BAD_REQUEST,
    ERROR_UNAVAILABLE,
    ERROR_UNKNOWN_FILE,
    ERROR_UNKNOWN_MODEL,
    FileEntry,
    ManifestRequest,
    ReadRequest,
    WeightsError,
    decode_request,
    encode_chunk_header,
    encode_error,
    encode_manifest,
)
from vramancer_node.logs import get_logger
from vramancer_node.net.handshake import AuthenticatedPeer
from vramancer_node.net.securestream import SecureStream
from vramancer_node.weights.store import WeightsStore

log = get_logger("weights")

READS_CONCURRENT_MAX = 4


class WeightsServer:
    """Serves this node's checkpoint files to members."""

    def __init__(self, store: WeightsStore) -> None:
        self.store = store
        self.stats: collections.Counter[str] = collections.Counter()
        self._reads = trio.CapacityLimiter(READS_CONCURRENT_MAX)

    async def serve_session(
        self, peer: AuthenticatedPeer, secure: SecureStream, body: bytes
    ) -> None:
        """The ``weights`` session handler (``PeerService.register``)."""
        try:
            request = decode_request(body)
        except RemoteProtocolError as exc:
            log.warning(
                "bad weights request", extra={"peer_node_id": peer.node_id, "detail": str(exc)}
            )
            await self._refuse(secure, ERROR_BAD_REQUEST, str(exc))
            return
        try:
            manifest = await self.store.manifest(request.model_id)
        except OSError as exc:
            await self._refuse(secure, ERROR_UNAVAILABLE, f"{request.model_id}: {exc}")
            return
        if manifest is None:
            await self._refuse(secure, ERROR_UNKNOWN_MODEL, f"no model {request.model_id!r} here")
            return
        if isinstance(request, ManifestRequest):
            self.stats["manifest"] += 1
            await secure.send_bulk(BULK_KIND_MANIFEST, b"", encode_manifest(manifest))
            return
        await self._read(peer, secure, request, manifest.file(request.file_name))

    async def _read(
        self,
        peer: AuthenticatedPeer,
        secure: SecureStream,
        request: ReadRequest,
        entry: FileEntry | None,
    ) -> None:
        if entry is None:
            await self._refuse(
                secure, ERROR_UNKNOWN_FILE, f"{request.model_id} has no file {request.file_name!r}"
            )
            return
        if request.offset > entry.size_bytes:
            await self._refuse(
                secure, ERROR_BAD_REQUEST, f"offset {request.offset} > size {entry.size_bytes}"
            )
            return
        directory = self.store.directory(request.model_id)
        assert directory is not None  # the manifest came from it
        end = min(request.offset + request.length, entry.size_bytes)
        async with self._reads:
            try:
                file = await trio.open_file(directory / entry.name, "rb")
            except OSError as exc:
                await self._refuse(secure, ERROR_UNAVAILABLE, f"{entry.name}: {exc.strerror}")
                return
            async with file:
                await file.seek(request.offset)
                position = request.offset
                while position < end:
                    data = await file.read(min(CHUNK_BYTES_MAX, end - position))
                    if not data:  # the file shrank under us
                        await self._refuse(secure, ERROR_UNAVAILABLE, f"{entry.name} shrank")
                        return
                    await secure.send_bulk(BULK_KIND_DATA, encode_chunk_header(position), data)
                    position += len(data)
                    self.stats["bytes_served"] += len(data)
        self.stats["read"] += 1
        log.info(
            "served weights",
            extra={
                "peer_node_id": peer.node_id,
                "model": request.model_id,
                "file": entry.name,
                "offset": request.offset,
                "bytes": end - request.offset,
            },
        )

    async def _refuse(self, secure: SecureStream, code: str, detail: str) -> None:
        self.stats[f"refused_{code}"] += 1
        await secure.send_control(encode_error(WeightsError(code=code, detail=detail)))
