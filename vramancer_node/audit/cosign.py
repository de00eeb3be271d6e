"""Members cosign each other's audit checkpoints over the secure channel.

Theory of operation
-------------------
Each node is a *witness* for the logs of the members it talks to: it keeps a
:class:`crypto.audit.Cosigner` (the last tree head it cosigned per peer log) and cosigns
a peer's new checkpoint only if it provably extends that head.  A node that showed one
history to one member and another to a second member, or rewrote its past, is then
caught by a witness holding two incompatible signed checkpoints (a *split view*).

:func:`exchange_checkpoints` runs one symmetric exchange with one peer over an already
authenticated message channel; both sides call it at the same time.  Messages are
msgpack maps ``{"v": 1, "t": <type>, ...}``::

    checkpoint   note (str), old_size (int), proof (list of 32-byte bin)
                 our latest checkpoint, with the RFC 6962 consistency proof from the
                 size we believe the peer last cosigned for us (0: none, empty proof)
    cosignature  line (str)   the peer cosigned it: a C2SP cosignature/v1 line
    refused      reason (str), known_size (int or nil)
                 the peer refused; with known_size our idea of what it holds was wrong
                 and we retry once with a proof from there (C2SP tlog-witness style)
    done         this side has its answer; it still answers the peer until its done

A side ends once it sent ``done`` and received the peer's.  The witness persists its
state with :func:`vramancer_node.atomic.atomic_write` *before* a cosignature leaves,
so a crash cannot make it forget what it signed.  A received cosignature is verified,
then stored on our checkpoint (an extra signature line of the note) together with the
witness's verifier key, so ``verify`` can check it later.

Keys: the node's identity key signs records (prefixed context), checkpoints (plain
Ed25519 note signatures, type 0x01, over text starting ``vramancer/``) and
cosignatures (type 0x04, over text starting ``cosignature/v1``).  The key ids differ by
type and the signed messages cannot be mistaken for one another, so one key serves all
three; the witness name is ``<origin>/witness``.

Error handling
--------------
A malformed message or a cosignature that does not verify is the peer's fault:
:class:`protocol.errors.RemoteProtocolError`, and the caller closes the connection.
A checkpoint we refuse is answered with ``refused`` and, unless it was only a stale
``old_size``, recorded as a ``cosign_refused`` audit record.  The whole exchange runs
under ``timeout_s`` (``trio.TooSlowError``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack
import trio

from crypto.audit import (
    AuditError,
    CosignatureV1Verifier,
    Cosigner,
    CosignError,
    CosignerStateError,
    NoteError,
    OldSizeMismatchError,
    audit_origin,
    parse_checkpoint,
    parse_note,
    verify_note,
)
from crypto.identity import node_id_from_public_key
from protocol.errors import RemoteProtocolError
from vramancer_node.atomic import atomic_write
from vramancer_node.audit.errors import AuditClosedError, StoreCorruptError
from vramancer_node.audit.kinds import COSIGN_REFUSED
from vramancer_node.logs import get_logger

if TYPE_CHECKING:
    from vramancer_node.audit.service import AuditService

__all__ = [
    "COSIGN_INTERVAL_S",
    "EXCHANGE_MESSAGES_MAX",
    "EXCHANGE_MESSAGE_BYTES_MAX",
    "EXCHANGE_TIMEOUT_S",
    "EXCHANGE_VERSION",
    "ExchangeResult",
    "Witness",
    "exchange_checkpoints",
    "witness_name",
]

log = get_logger("audit.cosign")

EXCHANGE_VERSION = 1
COSIGN_INTERVAL_S = 300.0
"""How often a member should exchange checkpoints with each peer it holds a session to."""
EXCHANGE_TIMEOUT_S = 30.0
"""Longest one exchange may take."""
EXCHANGE_MESSAGE_BYTES_MAX = 64 * 1024
"""Largest message: a checkpoint note (< 8 KiB with cosignatures) and a proof (<= 64
hashes, 2 KiB)."""
EXCHANGE_MESSAGES_MAX = 16
"""Most messages one side receives in one exchange (a normal one needs 3 or 5)."""
RETRIES_MAX = 1
"""Offers repeated after a refusal that names the size the peer holds."""
REASON_CHARS_MAX = 512

Send = Callable[[bytes], Awaitable[None]]
Receive = Callable[[], Awaitable[bytes]]


def witness_name(origin: str) -> str:
    """Return the cosigner key name of the node whose log has ``origin``."""
    return f"{origin}/witness"


class Witness:
    """This node's cosigner, with its state kept durable; see the module docstring."""

    def __init__(self, path: Path, cosigner: Cosigner) -> None:
        self._path = Path(path)
        self._cosigner = cosigner
        self._lock = trio.Lock()

    @classmethod
    def load(cls, path: Path, name: str, seed: bytes) -> Witness:
        """Load the state at ``path`` (a new witness if there is none).  Blocking."""
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            return cls(path, Cosigner(name=name, signing_key=seed))
        try:
            state = json.loads(data)
            if not isinstance(state, dict):
                raise CosignerStateError("state is not a JSON object")
            cosigner = Cosigner.from_state(name=name, signing_key=seed, state=state)
        except (ValueError, CosignerStateError) as exc:
            raise StoreCorruptError(f"witness state {path} is malformed: {exc}") from exc
        return cls(path, cosigner)

    @property
    def name(self) -> str:
        return self._cosigner.name

    async def cosign(
        self, note: str, public_key: bytes, proof: Sequence[bytes], now: float, old_size: int
    ) -> str:
        """Cosign a peer's checkpoint (see :meth:`crypto.audit.Cosigner.cosign`), persist
        the new state, and only then return the cosignature line."""
        async with self._lock:  # one cosign-and-persist at a time: the file stays newest
            line = self._cosigner.cosign(note, public_key, proof, now, old_size=old_size)
            state = json.dumps(self._cosigner.export_state(), sort_keys=True).encode()
            await trio.to_thread.run_sync(atomic_write, self._path, state)
        return line


@dataclass(frozen=True, kw_only=True)
class ExchangeResult:
    """What one exchange achieved, from our side."""

    peer_node_id: str
    our_size: int
    """Tree size of the checkpoint we offered."""
    our_cosigned: bool
    """The peer cosigned it (and the cosignature is stored)."""
    our_refusal: str | None
    """Why the peer refused it, if it did."""
    peer_size: int | None
    """Tree size of the last checkpoint the peer offered."""
    peer_cosigned: bool
    """We cosigned the peer's checkpoint."""
    peer_refusal: str | None
    """Why we refused the peer's checkpoint, if we did."""


async def exchange_checkpoints(
    send: Send,
    receive: Receive,
    service: AuditService,
    peer_node_id: str,
    peer_public_key: bytes,
    *,
    timeout_s: float = EXCHANGE_TIMEOUT_S,
) -> ExchangeResult:
    """Offer our latest checkpoint to an authenticated peer and cosign theirs.

    Args:
        send, receive: one message each way over the peer's secure channel.
        service: our running audit service.
        peer_node_id, peer_public_key: the peer as the channel authenticated it.
        timeout_s: limit for the whole exchange.
    """
    if node_id_from_public_key(peer_public_key) != peer_node_id:
        raise ValueError(f"public key does not belong to node {peer_node_id}")
    if service.witness is None:
        raise AuditClosedError("the audit service is not running")
    exchange = _Exchange(send, service, service.witness, peer_node_id, peer_public_key)
    with trio.fail_after(timeout_s):
        await exchange.offer(await service.cosigned_size(exchange.peer_witness))
        received = 0
        while not (exchange.sent_done and exchange.got_done):
            received += 1
            if received > EXCHANGE_MESSAGES_MAX:
                raise RemoteProtocolError(f"more than {EXCHANGE_MESSAGES_MAX} cosign messages")
            await exchange.handle(_decode(await receive()))
    return exchange.result()


class _Exchange:
    """One side of one exchange: what was offered, answered and received."""

    def __init__(
        self,
        send: Send,
        service: AuditService,
        witness: Witness,
        peer_node_id: str,
        peer_public_key: bytes,
    ) -> None:
        self._send = send
        self._service = service
        self._witness = witness
        self.peer_node_id = peer_node_id
        self._peer_public_key = peer_public_key
        self.peer_origin = audit_origin(service.cluster_id, peer_node_id)
        self.peer_witness = witness_name(self.peer_origin)
        self._peer_verifier = CosignatureV1Verifier(
            name=self.peer_witness, public_key=peer_public_key
        )
        self._ours_note = ""
        self._our_size = 0
        self._awaiting_answer = False
        self._retries = 0
        self._our_cosigned = False
        self._our_refusal: str | None = None
        self._peer_size: int | None = None
        self._peer_cosigned = False
        self._peer_refusal: str | None = None
        self.sent_done = False
        self.got_done = False

    async def offer(self, old_size: int) -> None:
        ours = await self._service.checkpoint()
        self._ours_note, self._our_size = ours.note, ours.size
        proof: list[bytes] = []
        if 0 < old_size < ours.size:
            proof = await self._service.consistency_proof(old_size, ours.size)
        self._awaiting_answer = True
        await self._message("checkpoint", note=ours.note, old_size=old_size, proof=proof)

    async def handle(self, message: dict[str, Any]) -> None:
        kind = message["t"]
        if kind == "checkpoint":
            await self._on_checkpoint(message["note"], message["proof"], message["old_size"])
        elif kind in ("cosignature", "refused"):
            if not self._awaiting_answer:
                raise RemoteProtocolError(f"unexpected {kind}: nothing was offered")
            self._awaiting_answer = False
            if kind == "cosignature":
                await self._on_cosignature(message["line"])
            else:
                await self._on_refused(message["reason"], message["known_size"])
        else:  # "done"
            if self.got_done:
                raise RemoteProtocolError("done sent twice")
            self.got_done = True

    async def _on_checkpoint(self, note: str, proof: list[bytes], old_size: int) -> None:
        try:
            checkpoint = parse_checkpoint(parse_note(note).text)
            self._peer_size = checkpoint.size
            if checkpoint.origin != self.peer_origin:
                raise CosignError(f"origin is {checkpoint.origin}, expected {self.peer_origin}")
            now = self._service.wall_clock()
            line = await self._witness.cosign(note, self._peer_public_key, proof, now, old_size)
        except OldSizeMismatchError as exc:
            await self._message("refused", reason=str(exc), known_size=exc.known_size)
            return
        except AuditError as exc:
            await self._refuse(str(exc)[:REASON_CHARS_MAX])
            return
        self._peer_cosigned, self._peer_refusal = True, None
        await self._message("cosignature", line=line)

    async def _refuse(self, reason: str) -> None:
        self._peer_cosigned, self._peer_refusal = False, reason
        log.error(
            "refused to cosign a peer's audit checkpoint",
            extra={"peer_node_id": self.peer_node_id, "size": self._peer_size, "detail": reason},
        )
        await self._service.append(
            COSIGN_REFUSED,
            {"node_id": self.peer_node_id, "size": self._peer_size or 0, "reason": reason},
        )
        await self._message("refused", reason=reason, known_size=None)

    async def _on_cosignature(self, line: str) -> None:
        if not line.endswith("\n") or line.count("\n") != 1:
            raise RemoteProtocolError("a cosignature must be exactly one signature line")
        try:
            verify_note(parse_note(self._ours_note + line), [self._peer_verifier])
        except NoteError as exc:
            raise RemoteProtocolError(f"the peer's cosignature does not verify: {exc}") from exc
        vkey = self._peer_verifier.vkey()
        await self._service.add_cosignature(self._our_size, line, self.peer_witness, vkey)
        self._our_cosigned = True
        await self._done()

    async def _on_refused(self, reason: str, known_size: int | None) -> None:
        if known_size is not None and self._retries < RETRIES_MAX:
            self._retries += 1
            await self.offer(known_size)
            return
        self._our_refusal = reason[:REASON_CHARS_MAX]
        log.warning(
            "a peer refused to cosign our audit checkpoint",
            extra={"peer_node_id": self.peer_node_id, "size": self._our_size, "detail": reason},
        )
        await self._done()

    async def _done(self) -> None:
        self.sent_done = True
        await self._message("done")

    async def _message(self, kind: str, **fields: Any) -> None:
        await self._send(_encode({"v": EXCHANGE_VERSION, "t": kind, **fields}))

    def result(self) -> ExchangeResult:
        return ExchangeResult(
            peer_node_id=self.peer_node_id,
            our_size=self._our_size,
            our_cosigned=self._our_cosigned,
            our_refusal=self._our_refusal,
            peer_size=self._peer_size,
            peer_cosigned=self._peer_cosigned,
            peer_refusal=self._peer_refusal,
        )


_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    "checkpoint": {"note": (str,), "old_size": (int,), "proof": (list,)},
    "cosignature": {"line": (str,)},
    "refused": {"reason": (str,), "known_size": (int, type(None))},
    "done": {},
}
"""Message types and their fields.  Append only."""


def _encode(message: dict[str, Any]) -> bytes:
    data: bytes = msgpack.packb(message, use_bin_type=True)
    return data


def _decode(data: bytes) -> dict[str, Any]:
    """Parse and check one message; :class:`RemoteProtocolError` if it is not valid."""
    if len(data) > EXCHANGE_MESSAGE_BYTES_MAX:
        raise RemoteProtocolError(f"cosign message over {EXCHANGE_MESSAGE_BYTES_MAX} bytes")
    try:
        message = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise RemoteProtocolError(f"cosign message is not msgpack: {exc}") from exc
    if not isinstance(message, dict) or message.get("v") != EXCHANGE_VERSION:
        raise RemoteProtocolError(f"cosign message is not a version {EXCHANGE_VERSION} map")
    fields = _FIELDS.get(message.get("t"))  # type: ignore[arg-type]
    if fields is None or set(message) != {"v", "t", *fields}:
        raise RemoteProtocolError(f"malformed cosign message of type {message.get('t')!r}")
    for name, types in fields.items():
        value = message[name]
        if not isinstance(value, types) or isinstance(value, bool):
            raise RemoteProtocolError(f"cosign message field {name} has the wrong type")
        if isinstance(value, int) and value < 0:
            raise RemoteProtocolError(f"cosign message field {name} is negative")
    if not all(isinstance(node, bytes) for node in message.get("proof", [])):
        raise RemoteProtocolError("cosign proof hashes must be bytes")
    return message
