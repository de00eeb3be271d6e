"""Stage hosting: serve the ``stage`` sessions of the placements this node is part of.

Theory of operation
-------------------
A stage session starts with a :class:`~protocol.pipeline.StageOpen` naming the model,
the placement epoch, the whole route and which stage the receiver is.  The host:

1. checks the open: the route's stage ``index`` is this node, the model is in
   ``runtime.models``, the epoch is not stale, the context fits ``runtime``'s bound;
2. opens the same session to the next stage, if any (so the next node starts loading
   while this one does);
3. has :mod:`~vramancer_node.pipeline.residency` load its layer range (a worker
   thread), unless that exact stage of that epoch is loaded already;
4. serves messages in order.  A prefill chunk or decode step is run through the stage
   (worker thread) and its hidden states are forwarded downstream.  The last stage
   samples a token when the message asks for one (a decode step or the prompt's
   final chunk) and sends a token result upstream; middle stages relay it, adding
   their own compute time in front of the list.  An error travels back the same way.

Epoch fencing (rules in :mod:`~vramancer_node.pipeline.residency`): an open under an
epoch older than the one in force is refused with ``stale_epoch``, and so is every
later message of a session whose epoch is no longer the one in force.

Error handling
--------------
Whatever the upstream hop sends wrong — a malformed header, a body of the wrong length,
a tensor of the wrong shape or dtype, a step out of order — is answered with an ERROR
message naming it (``bad_activation``); the session ends, the node keeps serving every
other session.  A full KV cache answers ``context_exceeded``; an evicted session
``evicted``; an unreachable next stage ``unreachable``.

Resource handling
-----------------
At most ``runtime.sessions_max`` sessions hold a KV cache (LRU eviction,
:mod:`vramancer_node.pipeline.sessions`); a session idle for
``runtime.session_idle_timeout_s`` is closed.  One stage per model is resident.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import torch
import trio

from protocol.errors import RemoteProtocolError
from protocol.frames import BulkFrame, EndOfStream
from protocol.pipeline import (
    BULK_KIND_ACTIVATION,
    ActivationError,
    ActivationHeader,
    MessageKind,
    StageOpen,
    decode_header,
    decode_stage_open,
    encode_header,
    encode_stage_open,
    error_header,
)
from protocol.pipeline.activations import FLOAT_DTYPES
from protocol.session import SERVICE_STAGE
from vramancer_node.logs import get_logger
from vramancer_node.net.handshake import AuthenticatedPeer, HandshakeFailed
from vramancer_node.net.securestream import SecureStream
from vramancer_node.peering import PeerService
from vramancer_node.pipeline.errors import UnknownModelError
from vramancer_node.pipeline.fetching import FetchFiles, StageFilesError, fetch_stage_files
from vramancer_node.pipeline.models import ModelRegistry
from vramancer_node.pipeline.placements import PlacementSource
from vramancer_node.pipeline.residency import LoadedStage, Refusal, StageResidency
from vramancer_node.pipeline.sessions import SessionTable, StageSession
from vramancer_node.pipeline.tensors import body_tensor, dtype_tag, tensor_body
from vramancer_node.runtime import CheckpointError, KVCacheFullError, Sampler, SamplingParams
from vramancer_node.runtime.stage import Stage

log = get_logger("pipeline")

TRANSPORT_ERRORS = (
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    OSError,
    HandshakeFailed,
    trio.TooSlowError,
)


DRAIN_TIMEOUT_S = 10.0
"""Longest a refused session is drained before it is closed (see ``_drain``)."""


@dataclass(frozen=True, kw_only=True)
class HostSettings:
    dtype: str
    device: str
    sessions_max: int
    session_idle_timeout_s: float
    context_tokens_max: int


class StageHost:
    """The stages this node runs and the sessions flowing through them."""

    def __init__(
        self,
        node_id: str,
        models: ModelRegistry,
        placements: PlacementSource,
        peers: PeerService,
        settings: HostSettings,
        fetch: FetchFiles | None = None,
    ) -> None:
        self.node_id = node_id
        self.fetch = fetch
        """Fetches checkpoint files from members (``node.ensure_model_files``)."""
        self._fetched: set[tuple[str, int, int]] = set()
        self.models = models
        self.placements = placements
        self.peers = peers
        self.settings = settings
        self.sessions = SessionTable(settings.sessions_max)
        self.messages: collections.Counter[str] = collections.Counter()
        self.residency = StageResidency(
            node_id, models, placements, dtype=settings.dtype, device=settings.device
        )

    def epoch_of(self, model_id: str) -> int:
        """The highest placement epoch of ``model_id`` this host has run (0: none)."""
        return self.residency.current_epoch(model_id)

    def register(self) -> None:
        self.peers.register(SERVICE_STAGE, self.serve_session, session_timeout_s=None)

    def status(self) -> dict[str, Any]:
        counters = self.sessions.counters
        return {
            "stages": self.residency.status(),
            "sessions_active": len(self.sessions),
            "sessions_max": self.sessions.sessions_max,
            "sessions_opened_total": counters.opened_total,
            "sessions_evicted_total": counters.evicted_total,
            "sessions_refused_total": counters.refused_total,
            "refusals": dict(sorted(counters.by_error.items())),
            "kv_cache_bytes": self.sessions.cache_bytes(),
            "messages": dict(sorted(self.messages.items())),
        }

    # -- one session ------------------------------------------------------------

    async def serve_session(
        self, peer: AuthenticatedPeer, secure: SecureStream, body: bytes
    ) -> None:
        """Serve one stage session from ``peer`` (see the module docstring)."""
        try:
            opened = decode_stage_open(body)
        except ActivationError as exc:
            await self._refuse(secure, None, 0, Refusal("bad_activation", f"stage open: {exc}"))
            return
        try:
            await self._fetch_files(opened)
            self._check_open(peer, opened)
            if opened.is_last:
                await self._serve(secure, None, opened)
            else:
                async with self._downstream(opened) as downstream:
                    await self._serve(secure, downstream, opened)
        except Refusal as refusal:
            await self._refuse(secure, opened, None, refusal)
        except (*TRANSPORT_ERRORS, RemoteProtocolError) as exc:
            # The upstream hop went away or broke the stream: nobody left to tell.
            log.info(
                "stage session ended by the upstream hop",
                extra={"model": opened.model_id, "detail": str(exc)[:200]},
            )

    async def _fetch_files(self, opened: StageOpen) -> None:
        """Fetch the stage's files when this node does not hold the model itself."""
        stage = opened.stage
        key = (opened.model_id, stage.first_layer, stage.last_layer_exclusive)
        if (
            self.fetch is None
            or stage.node_id != self.node_id
            or self.models.configured(opened.model_id)
            or key in self._fetched
        ):
            return
        try:
            await fetch_stage_files(self.fetch, self.models, opened)
        except StageFilesError as exc:
            raise Refusal("load_failed", str(exc)) from None
        self._fetched.add(key)

    def _check_open(self, peer: AuthenticatedPeer, opened: StageOpen) -> None:
        stage = opened.stage
        if stage.node_id != self.node_id:
            raise Refusal("not_assigned", f"stage {opened.index} is node {stage.node_id}, not us")
        if opened.index > 0 and peer.node_id != opened.stages[opened.index - 1].node_id:
            raise Refusal("bad_activation", f"session opened by {peer.node_id}, not stage before")
        try:
            config = self.models.config(opened.model_id)
        except UnknownModelError as exc:
            raise Refusal("unknown_model", str(exc)) from None
        except CheckpointError as exc:
            raise Refusal("load_failed", str(exc)) from None
        if opened.stages[-1].last_layer_exclusive != config.num_hidden_layers:
            raise Refusal(
                "not_assigned",
                f"the route covers {opened.stages[-1].last_layer_exclusive} layers, "
                f"{opened.model_id} here has {config.num_hidden_layers}",
            )
        bound = min(self.settings.context_tokens_max, config.max_position_embeddings)
        if opened.context_tokens > bound:
            raise Refusal(
                "context_exceeded",
                f"{opened.context_tokens} tokens of context asked, this node reserves {bound}",
            )
        self.residency.check_epoch(opened)

    @contextlib.asynccontextmanager
    async def _downstream(self, opened: StageOpen) -> AsyncIterator[SecureStream]:
        following = opened.next_hop()
        address = following.stage.address
        opened_session = False
        try:
            async with self.peers.open_session(
                address, SERVICE_STAGE, encode_stage_open(following)
            ) as (peer, secure):
                opened_session = True
                if peer.node_id != following.stage.node_id:
                    raise Refusal("unreachable", f"{address} is {peer.node_id}, not the next stage")
                yield secure
        except TRANSPORT_ERRORS as exc:
            if opened_session:
                raise  # not the opening: the caller tells whose stream it was
            raise Refusal(
                "unreachable", f"next stage {following.stage.node_id} at {address}: {exc}"
            ) from None

    async def _serve(
        self, upstream: SecureStream, downstream: SecureStream | None, opened: StageOpen
    ) -> None:
        loaded, replaced = await self.residency.ensure_loaded(opened)
        if replaced:
            self.sessions.drop_model(opened.model_id)
        session = StageSession(
            session_id=opened.session_id,
            model_id=opened.model_id,
            epoch=opened.epoch,
            cache=loaded.stage.new_kv_cache(max_tokens=opened.context_tokens),
            sampler=Sampler(_sampling(opened)) if downstream is None else None,
        )
        try:
            self.sessions.open(session)
        except ValueError:
            raise Refusal("bad_activation", "this session id is already open here") from None
        try:
            while True:
                with trio.move_on_after(self.settings.session_idle_timeout_s) as idle:
                    frame = await upstream.receive_frame()
                if idle.cancelled_caught:
                    log.info("stage session idle: closed", extra={"model": opened.model_id})
                    return
                if isinstance(frame, EndOfStream):
                    return
                await self._handle(upstream, downstream, loaded, session, frame)
        except _Relayed:
            with contextlib.suppress(*TRANSPORT_ERRORS, RemoteProtocolError):
                await _drain(upstream)
        finally:
            self.sessions.close(session)

    async def _handle(
        self,
        upstream: SecureStream,
        downstream: SecureStream | None,
        loaded: LoadedStage,
        session: StageSession,
        frame: object,
    ) -> None:
        header, tensor = self._accept(loaded, session, frame)
        self.sessions.touch(session)
        output, compute_s = await _run_stage(loaded.stage, tensor, header, session)
        session.pending_compute_s += compute_s
        wants_token = header.kind == MessageKind.DECODE or header.last_chunk
        if downstream is not None:
            forward = replace(header, dtype=dtype_tag(output), shape=tuple(output.shape))
            try:
                await _send(downstream, forward, tensor_body(output))
            except TRANSPORT_ERRORS as exc:
                raise Refusal("unreachable", f"the next stage stopped reading: {exc}") from None
            if wants_token:
                await self._relay_reply(upstream, downstream, session)
            return
        if wants_token:
            assert session.sampler is not None
            token = session.sampler.sample(output[:, -1])
            reply = replace(
                header,
                kind=MessageKind.TOKEN,
                first_position=header.first_position + header.shape[1],
                dtype="i64",
                shape=tuple(token.shape),
                last_chunk=False,
                stage_times_s=(session.pending_compute_s,),
            )
            session.pending_compute_s = 0.0
            await _send(upstream, reply, tensor_body(token))
            self.messages["token"] += 1

    def _accept(
        self, loaded: LoadedStage, session: StageSession, frame: object
    ) -> tuple[ActivationHeader, torch.Tensor]:
        """Check one upstream message against the session; its header and tensor."""
        if not isinstance(frame, BulkFrame) or frame.kind != BULK_KIND_ACTIVATION:
            raise Refusal("bad_activation", f"expected an activation BULK frame, got {frame!r:.60}")
        try:
            header = decode_header(frame.header)
            tensor = body_tensor(header, frame.body)
        except ActivationError as exc:
            raise Refusal("bad_activation", f"{type(exc).__name__}: {exc}") from None
        self.messages[header.kind.name.lower()] += 1
        if header.kind not in (MessageKind.PREFILL, MessageKind.DECODE):
            raise Refusal(
                "bad_activation", f"a stage accepts prefill or decode, not {header.kind.name}"
            )
        if header.session_id != session.session_id:
            raise Refusal("bad_activation", "activation of another session")
        current = self.residency.current_epoch(session.model_id)
        if header.epoch != session.epoch or current != session.epoch:
            raise Refusal(
                "stale_epoch",
                f"{session.model_id}: this node runs placement epoch {current}, "
                f"the message epoch {header.epoch}",
            )
        if header.step != session.next_step:
            raise Refusal("bad_activation", f"step {header.step}, expected {session.next_step}")
        session.next_step += 1
        if session.evicted:
            raise Refusal("evicted", "this session's KV cache was evicted (too many sessions)")
        first = loaded.stage.has_embedding
        if first and header.dtype != "i64":
            raise Refusal(
                "bad_activation", f"the first stage takes i64 token ids, got {header.dtype}"
            )
        if not first and header.dtype not in FLOAT_DTYPES:
            raise Refusal(
                "bad_activation",
                f"stage {loaded.first_layer} takes hidden states, got {header.dtype}",
            )
        if header.shape[0] != 1:
            raise Refusal("bad_activation", f"batch {header.shape[0]}; sessions hold batch 1")
        hidden = loaded.stage.config.hidden_size
        if not first and header.shape[2] != hidden:
            raise Refusal(
                "bad_activation",
                f"hidden states {header.dtype} {list(header.shape)}, this stage expects "
                f"[1, {header.shape[1]}, {hidden}] ({session.model_id} layer {loaded.first_layer})",
            )
        return header, tensor

    async def _relay_reply(
        self, upstream: SecureStream, downstream: SecureStream, session: StageSession
    ) -> None:
        try:
            with trio.fail_after(self.settings.session_idle_timeout_s):
                frame = await downstream.receive_frame()
        except (*TRANSPORT_ERRORS, RemoteProtocolError) as exc:
            raise Refusal("unreachable", f"the next stage did not answer: {exc}") from None
        if not isinstance(frame, BulkFrame) or frame.kind != BULK_KIND_ACTIVATION:
            raise Refusal("unreachable", "the next stage closed the session without an answer")
        try:
            reply = decode_header(frame.header)
        except ActivationError as exc:
            raise Refusal("bad_activation", f"the next stage answered: {exc}") from None
        if reply.kind == MessageKind.TOKEN:
            reply = replace(reply, stage_times_s=(session.pending_compute_s, *reply.stage_times_s))
            session.pending_compute_s = 0.0
        elif reply.kind != MessageKind.ERROR:
            raise Refusal("bad_activation", f"the next stage answered {reply.kind.name}")
        await _send(upstream, reply, memoryview(frame.body))
        if reply.kind == MessageKind.ERROR:
            raise _Relayed

    async def _refuse(
        self, secure: SecureStream, opened: StageOpen | None, step: int | None, refusal: Refusal
    ) -> None:
        counters = self.sessions.counters
        counters.refused_total += 1
        counters.by_error[refusal.code] += 1
        log.warning(
            "stage session refused",
            extra={"code": refusal.code, "detail": refusal.detail[:300]},
        )
        header = error_header(
            epoch=opened.epoch if opened else 0,
            session_id=opened.session_id if opened else bytes(16),
            step=step or 0,
            code=refusal.code,
            detail=f"node {self.node_id}: {refusal.detail}",
        )
        with contextlib.suppress(*TRANSPORT_ERRORS, RemoteProtocolError):
            await _send(secure, header, b"")
            await _drain(secure)


async def _drain(secure: SecureStream) -> None:
    """Read and drop what the upstream hop still sends until it ends the session.

    Closing right after an ERROR would reset a connection the upstream hop is still
    writing to, and a reset can destroy the ERROR before it is read.  The upstream hop
    reads the ERROR when it next waits for an answer, then ends the session.
    """
    with trio.move_on_after(DRAIN_TIMEOUT_S):
        while not isinstance(await secure.receive_frame(), EndOfStream):
            pass


class _Relayed(Exception):
    """The next stage's ERROR went upstream already: end the session quietly."""


def _sampling(opened: StageOpen) -> SamplingParams:
    wire = opened.sampling
    return SamplingParams(
        temperature=wire.temperature, top_k=wire.top_k, top_p=wire.top_p, seed=wire.seed
    )


async def _send(secure: SecureStream, header: ActivationHeader, body: bytes | memoryview) -> None:
    await secure.send_bulk(BULK_KIND_ACTIVATION, encode_header(header), body)


async def _run_stage(
    stage: Stage, tensor: torch.Tensor, header: ActivationHeader, session: StageSession
) -> tuple[torch.Tensor, float]:
    """Run ``stage`` over ``tensor`` in a worker thread; the output and compute seconds."""
    cache = session.cache
    assert cache is not None

    def forward() -> tuple[torch.Tensor, float]:
        started = time.perf_counter()
        with torch.inference_mode():
            positions = torch.arange(header.first_position, header.first_position + header.shape[1])
            output = stage(tensor, positions, cache, last_only=True)
            if output.device.type != "cpu":
                output = output.to("cpu")
        return output, time.perf_counter() - started

    try:
        return await trio.to_thread.run_sync(forward)
    except KVCacheFullError as exc:
        raise Refusal("context_exceeded", str(exc)) from None
    except ValueError as exc:
        raise Refusal("bad_activation", str(exc)) from None
    except RuntimeError as exc:  # torch: out of memory, a device fault
        log.exception("stage forward failed")
        raise Refusal("internal", f"stage forward failed: {exc}") from None
