"""The secure stream: a trio ``HalfCloseableStream`` over length-prefixed Noise messages.

Theory of operation
-------------------
After the handshake (:mod:`vramancer_node.net.handshake`) each side holds one
:class:`crypto.noise.CipherState` per direction.  Every frame of
:mod:`protocol.frames` is encrypted into one Noise message and sent with its 2-byte
length prefix.  Two interfaces share the connection:

* the byte-stream interface of ``trio.abc.HalfCloseableStream`` (``send_all``,
  ``receive_some``, ``send_eof``), carried in DATA frames;
* the frame interface (``send_control``, ``send_bulk``, ``receive_frame``) for
  control messages and large payloads such as tensors.

Use one or the other at a time: ``receive_some`` refuses a non-DATA frame.

Copies: a sent frame is copied once into its plaintext (``encode_data`` straight
from a view of the caller's buffer, or a bulk chunk out of the payload) and its
ciphertext once into the write batch.  A received message is sliced once out of the
chunk the transport returned (:class:`protocol.frames.MessageDecoder`), and a DATA
body once off its type byte; ``receive_some`` hands that body over whole, without
another copy, whenever ``max_bytes`` allows.  Beyond that, libsodium (through
``nacl.bindings``) allocates its output.

Rekeying: both directions call ``CipherState.rekey()`` after every
``REKEY_INTERVAL_MESSAGES`` messages; both ends count the same messages, so no
signal is needed.

Resource handling
-----------------
``aclose`` sends END_OF_STREAM (if not sent yet) with a short shielded timeout, then
closes the transport: a peer that stopped reading cannot hold ``aclose`` hostage.

Error handling
--------------
A transport that ends without END_OF_STREAM raises ``trio.BrokenResourceError``
(truncation).  A frame that fails to decrypt or parse raises
:class:`protocol.errors.RemoteProtocolError`; the stream is then unusable and the
caller closes it.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Iterable

import trio

from crypto.noise import CipherState
from crypto.noise.errors import NoiseError
from protocol.errors import RemoteProtocolError
from protocol.frames import (
    FRAME_BODY_BYTES_MAX,
    LENGTH_PREFIX_BYTES,
    BulkFrame,
    ControlFrame,
    DataFrame,
    EndOfStream,
    Frame,
    FrameDecoder,
    MessageDecoder,
    bulk_plaintexts,
    encode_control,
    encode_data,
    encode_end_of_stream,
)

REKEY_INTERVAL_MESSAGES = 1 << 20
RECEIVE_BYTES = 256 * 1024
"""Bytes asked of the transport per read: several messages per system call."""
SEND_BATCH_BYTES = 512 * 1024
"""Encrypted messages are coalesced into writes of about this size."""
CLOSE_TIMEOUT_S = 1.0
"""How long ``aclose`` tries to deliver END_OF_STREAM before giving up."""

_LENGTH = struct.Struct(">H")


class _Direction:
    """One direction's cipher with the shared rekey schedule."""

    def __init__(self, cipher: CipherState) -> None:
        self.cipher = cipher
        self.messages = 0

    def _count(self) -> None:
        self.messages += 1
        if self.messages % REKEY_INTERVAL_MESSAGES == 0:
            self.cipher.rekey()

    def seal(self, plaintext: bytes) -> bytes:
        """The ciphertext of ``plaintext``; the caller sends its length prefix first."""
        ciphertext = self.cipher.encrypt_with_ad(b"", plaintext)
        self._count()
        return ciphertext

    def open(self, message: bytes) -> bytes:
        try:
            plaintext = self.cipher.decrypt_with_ad(b"", message)
        except NoiseError as exc:
            raise RemoteProtocolError(f"secure stream: {exc}") from exc
        self._count()
        return plaintext


class SecureStream(trio.abc.HalfCloseableStream):
    """Encrypted, authenticated, truncation-evident stream over ``transport``."""

    def __init__(
        self,
        transport: trio.abc.Stream,
        send_cipher: CipherState,
        receive_cipher: CipherState,
        *,
        leftover: bytes = b"",
    ) -> None:
        self.transport = transport
        self._send = _Direction(send_cipher)
        self._recv = _Direction(receive_cipher)
        self._messages = MessageDecoder()
        self._messages.feed(leftover)
        self._frames = FrameDecoder()
        self._data = b""
        """The DATA frame ``receive_some`` is handing out, from ``_data_offset`` on."""
        self._data_offset = 0
        self._send_busy = False
        self._receive_busy = False
        self._closed = False
        self._eof_sent = False
        self._eof_received = False
        self._broken: BaseException | None = None

    # -- sending --------------------------------------------------------------

    def _check_send(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the secure stream is closed")
        if self._send_busy:
            raise trio.BusyResourceError("another task is sending on this stream")
        if self._eof_sent:
            raise trio.ClosedResourceError("send_eof() was called; no more sending")

    async def _send_plaintexts(self, plaintexts: Iterable[bytes]) -> None:
        self._check_send()
        self._send_busy = True
        try:
            # Each ciphertext is copied once, behind its prefix, into one buffer that
            # every batch of this call reuses: a large send allocates it once, so the
            # allocator never maps and faults in fresh pages batch after batch.
            seal, pack = self._send.seal, _LENGTH.pack
            batch = bytearray()
            used = 0
            for plaintext in plaintexts:
                ciphertext = seal(plaintext)
                start = used + LENGTH_PREFIX_BYTES
                batch[used:start] = pack(len(ciphertext))
                used = start + len(ciphertext)
                batch[start:used] = ciphertext
                if used >= SEND_BATCH_BYTES:
                    await self._write(batch, used)
                    used = 0
            if used:
                await self._write(batch, used)
            else:
                await trio.lowlevel.checkpoint()
        finally:
            self._send_busy = False

    async def _write(self, batch: bytearray, size: int) -> None:
        # The transport gets a view of the reused buffer; trio's streams are done
        # with it when send_all returns (they send or copy it).
        with memoryview(batch) as view:
            await self.transport.send_all(view[:size])

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        chunks = (
            encode_data(view[i : i + FRAME_BODY_BYTES_MAX])  # the only copy before sealing
            for i in range(0, len(view), FRAME_BODY_BYTES_MAX)
        )
        await self._send_plaintexts(chunks)

    async def wait_send_all_might_not_block(self) -> None:
        self._check_send()
        self._send_busy = True
        try:
            await self.transport.wait_send_all_might_not_block()
        finally:
            self._send_busy = False

    async def send_control(self, payload: bytes) -> None:
        """Send one control message (at most one frame)."""
        await self._send_plaintexts([encode_control(payload)])

    async def send_bulk(self, kind: int, header: bytes, body: bytes | memoryview) -> None:
        """Send a large payload in 65519-byte chunks, one chunk copied at a time."""
        await self._send_plaintexts(bulk_plaintexts(kind, header, body))

    async def send_eof(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the secure stream is closed")
        if self._eof_sent:
            await trio.lowlevel.checkpoint()
            return
        await self._send_plaintexts([encode_end_of_stream()])
        self._eof_sent = True
        if isinstance(self.transport, trio.abc.HalfCloseableStream):
            await self.transport.send_eof()

    # -- receiving ------------------------------------------------------------

    async def _next_frame(self) -> Frame:
        # Always a checkpoint, but never one that can lose a frame: cancellation is
        # honoured before anything is consumed, and the yield after a frame was
        # taken from the buffer is shielded.
        await trio.lowlevel.checkpoint_if_cancelled()
        waited = False
        while True:
            message = self._messages.next_message()
            if message is not None:
                frame = self._frames.receive(self._recv.open(message))
                if frame is not None:
                    if not waited:
                        await trio.lowlevel.cancel_shielded_checkpoint()
                    return frame
                continue
            waited = True
            data = await self.transport.receive_some(RECEIVE_BYTES)
            if not data:
                raise trio.BrokenResourceError(
                    "the peer's connection ended without END_OF_STREAM: the stream was truncated"
                )
            self._messages.feed(data)

    async def receive_frame(self) -> Frame:
        """The next frame of any type; ``EndOfStream()`` once the peer is done."""
        self._check_receive()
        if self._eof_received:
            await trio.lowlevel.checkpoint()
            return EndOfStream()
        self._receive_busy = True
        try:
            frame = await self._next_frame()
        except (RemoteProtocolError, trio.BrokenResourceError) as exc:
            self._broken = exc
            raise
        finally:
            self._receive_busy = False
        if isinstance(frame, EndOfStream):
            self._eof_received = True
        return frame

    def _check_receive(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the secure stream is closed")
        if self._receive_busy:
            raise trio.BusyResourceError("another task is receiving on this stream")
        if self._broken is not None:
            raise trio.BrokenResourceError("the secure stream failed earlier") from self._broken

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)  # TypeError for 1.5, as streams must
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
        self._check_receive()
        if self._data_offset < len(self._data) or self._eof_received:
            await trio.lowlevel.checkpoint()
        else:
            self._data, self._data_offset = await self._next_data(), 0
        data, start = self._data, self._data_offset
        size = len(data) - start if max_bytes is None else min(max_bytes, len(data) - start)
        if size == len(data):
            self._data = b""
            return data  # the whole body: handed out without a copy
        self._data_offset = start + size
        return data[start : start + size]

    async def _next_data(self) -> bytes:
        """The next non-empty DATA body, or b"" at END_OF_STREAM."""
        while True:
            frame = await self.receive_frame()
            if isinstance(frame, DataFrame):
                if frame.data:  # an empty DATA frame must not read as end of stream
                    return frame.data
            elif isinstance(frame, EndOfStream):
                return b""
            else:
                self._broken = RemoteProtocolError(f"expected a DATA frame, got {frame!r:.60}")
                raise self._broken

    # -- closing --------------------------------------------------------------

    async def aclose(self) -> None:
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        try:
            if not self._eof_sent and not self._send_busy and self._broken is None:
                with trio.move_on_after(CLOSE_TIMEOUT_S) as scope:
                    scope.shield = True
                    try:
                        await self._send_plaintexts([encode_end_of_stream()])
                        self._eof_sent = True
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        pass  # the peer is gone; closing is all that is left
        finally:
            self._closed = True
            await self.transport.aclose()


__all__ = ["BulkFrame", "ControlFrame", "DataFrame", "EndOfStream", "SecureStream"]
