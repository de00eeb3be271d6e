"""The driver: run one generation through the stage chain and stream its tokens.

Theory of operation
-------------------
``Driver.generate_stream(model_id, prompt_ids, params)`` is what
``node.generate_stream`` runs, for ``POST /v1/generate`` and the OpenAI endpoints:

1. resolve the model (``runtime.models``) and the reserved context
   (``runtime.context_tokens``, at most the model's ``max_position_embeddings``); a
   prompt longer than the context is a :class:`ContextTooLongError`, and
   ``max_new_tokens`` is cut so prompt + generated tokens fit it;
2. take the placement in force, or have one computed
   (:class:`~vramancer_node.pipeline.placements.PlacementSource`), and find each
   stage node's address in the gossiped member records;
3. open a ``stage`` session to the first stage with the route (the stages open the
   rest of the chain themselves, see :mod:`vramancer_node.pipeline.host`);
4. send the prompt in chunks of ``runtime.prefill_chunk_tokens`` (only the final
   chunk is answered), then one decode step per generated token; each answer is a
   token with every stage's compute time, yielded as a :class:`TokenEvent`.

Generation stops at a stop token (``finish_reason="stop"``) or at
``max_new_tokens`` (``"length"``).  Closing the iterator early ends the session:
each stage sees the end of its stream and frees the session's KV cache.

Error handling
--------------
A stage's ERROR becomes a :class:`StageError` (:class:`StaleEpochError` for
``stale_epoch``) naming the code, the detail and the node.  A connection that fails
becomes ``StageError("unreachable", ...)``.  Nothing is retried here.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import torch
import trio

from protocol.errors import RemoteProtocolError
from protocol.frames import BulkFrame
from protocol.pipeline import (
    BULK_KIND_ACTIVATION,
    SESSION_ID_BYTES,
    ActivationError,
    ActivationHeader,
    MessageKind,
    RouteStage,
    StageOpen,
    WireSampling,
    decode_header,
    encode_header,
    encode_stage_open,
)
from protocol.placement import Placement
from protocol.session import SERVICE_STAGE
from vramancer_node.net.securestream import SecureStream
from vramancer_node.peering import PeerService
from vramancer_node.pipeline.errors import (
    ContextTooLongError,
    PipelineError,
    PlacementUnavailableError,
    StageError,
    StaleEpochError,
    UnknownModelError,
)
from vramancer_node.pipeline.fetching import CONFIG_FILE_NAME, FetchFiles
from vramancer_node.pipeline.host import TRANSPORT_ERRORS
from vramancer_node.pipeline.metrics import DriverMetrics
from vramancer_node.pipeline.models import ModelRegistry
from vramancer_node.pipeline.placements import PlacementSource
from vramancer_node.pipeline.tensors import body_tensor, tensor_body
from vramancer_node.runtime import CheckpointError, SamplingParams
from vramancer_node.weights import WeightsError

FINISH_STOP = "stop"
FINISH_LENGTH = "length"


@dataclass(frozen=True, kw_only=True)
class DriverSettings:
    dtype: str
    context_tokens: int
    prefill_chunk_tokens: int
    step_timeout_s: float


@dataclass(frozen=True, kw_only=True)
class TokenEvent:
    """One generated token (compatible with ``serving.generator.GeneratedToken``)."""

    token_id: int
    index: int
    """0 for the first generated token."""
    finish_reason: str | None
    """``stop`` (a stop token) or ``length`` on the last token, else None."""
    stage_times_s: tuple[float, ...]
    """Compute seconds of each stage for this token (all prefill chunks for the first)."""
    step_s: float
    """Seconds from sending the step to receiving its token (the first: the prefill)."""
    epoch: int
    """The placement epoch the generation ran under."""
    stage_node_ids: tuple[str, ...]
    """The node of each stage, in pipeline order."""


class Driver:
    """Runs generations from this node over the cluster's stages."""

    def __init__(
        self,
        models: ModelRegistry,
        placements: PlacementSource,
        peers: PeerService,
        address_of: Callable[[str], str | None],
        settings: DriverSettings,
        fetch: FetchFiles | None = None,
    ) -> None:
        self.models = models
        self.placements = placements
        self.peers = peers
        self.address_of = address_of
        self.settings = settings
        self.metrics = DriverMetrics()
        self.fetch = fetch
        """Fetches a model's config.json from members when this node lacks the model."""

    def context_tokens(self, model_id: str) -> int:
        """Positions one session may use for ``model_id`` (prompt + generated)."""
        try:
            config = self.models.config(model_id)
        except CheckpointError as exc:
            raise PipelineError(f"{model_id}: {exc}") from exc
        return min(self.settings.context_tokens, config.max_position_embeddings)

    async def placement(self, model_id: str) -> tuple[int, Placement]:
        """The placement in force for ``model_id``, computed if there is none."""
        committed = self.placements.committed_placement(model_id)
        if committed is not None:
            return committed
        entry = self.models.entry(model_id)
        return await self.placements.propose_placement(
            entry.directory, self.context_tokens(model_id), self.settings.dtype
        )

    async def generate_stream(
        self, model_id: str, prompt_ids: Sequence[int], params: SamplingParams
    ) -> AsyncIterator[TokenEvent]:
        """Stream the tokens generated after ``prompt_ids`` (see the module docstring)."""
        await self._ensure_config(model_id)
        context = self.context_tokens(model_id)
        vocab = self.models.config(model_id).vocab_size
        if not prompt_ids:
            raise ValueError("the prompt is empty")
        if any(not 0 <= token < vocab for token in prompt_ids):
            raise ValueError(f"a prompt token id is outside [0, {vocab})")
        if len(prompt_ids) > context:
            raise ContextTooLongError(
                f"the prompt has {len(prompt_ids)} tokens; {model_id} reserves {context} "
                "tokens of context per session (runtime.context_tokens)"
            )
        # The last token is returned, never fed back: the caches need prompt + n - 1.
        max_new = min(params.max_new_tokens, context - len(prompt_ids) + 1)
        epoch, placement = await self.placement(model_id)
        opened = StageOpen(
            model_id=model_id,
            epoch=epoch,
            session_id=os.urandom(SESSION_ID_BYTES),
            index=0,
            stages=self._route(placement),
            context_tokens=len(prompt_ids) + max_new - 1,
            sampling=WireSampling(
                temperature=params.temperature,
                top_k=params.top_k,
                top_p=params.top_p,
                seed=params.seed,
            ),
        )
        run = _Run(opened, self.settings, params.stop_token_ids, max_new, len(prompt_ids))
        first = opened.stages[0]
        self.metrics.generations_total += 1
        try:
            async with self.peers.open_session(
                first.address, SERVICE_STAGE, encode_stage_open(opened)
            ) as (_peer, secure):
                async for event in run.events(secure, prompt_ids):
                    self.metrics.token(event.index, event.step_s, event.stage_times_s)
                    yield event
        except StageError as exc:
            self.metrics.failures[exc.code] += 1
            raise
        except TRANSPORT_ERRORS as exc:
            self.metrics.failures["unreachable"] += 1
            raise StageError("unreachable", f"{first.address}: {exc}", first.node_id) from exc
        except RemoteProtocolError as exc:
            self.metrics.failures["bad_activation"] += 1
            raise StageError("bad_activation", str(exc), first.node_id) from exc

    async def _ensure_config(self, model_id: str) -> None:
        """A model this node does not serve: its config.json from a member that does."""
        if model_id in self.models or self.fetch is None:
            return
        try:
            directory = await self.fetch(model_id, [CONFIG_FILE_NAME])
        except (WeightsError, ValueError, OSError) as exc:
            try:
                self.models.entry(model_id)
            except UnknownModelError as unknown:
                raise UnknownModelError(f"{unknown}; and from members: {exc}") from exc
            raise
        self.models.add(model_id, directory)

    def _route(self, placement: Placement) -> tuple[RouteStage, ...]:
        route = []
        for stage in placement.stages:
            address = self.address_of(stage.node_id)
            if address is None:
                raise PlacementUnavailableError(
                    f"node {stage.node_id} of the placement is not a live member"
                )
            route.append(
                RouteStage(
                    node_id=stage.node_id,
                    address=address,
                    first_layer=stage.first_layer,
                    last_layer_exclusive=stage.last_layer_exclusive,
                )
            )
        return tuple(route)


class _Run:
    """The messages of one generation on its session to the first stage."""

    def __init__(
        self,
        opened: StageOpen,
        settings: DriverSettings,
        stop_token_ids: Sequence[int],
        max_new: int,
        prompt_tokens: int,
    ) -> None:
        self.opened = opened
        self.settings = settings
        self.stop = set(stop_token_ids)
        self.max_new = max_new
        self.prompt_tokens = prompt_tokens
        self.step = 0

    async def events(
        self, secure: SecureStream, prompt_ids: Sequence[int]
    ) -> AsyncIterator[TokenEvent]:
        prompt = torch.tensor([list(prompt_ids)], dtype=torch.int64)
        chunk_tokens = self.settings.prefill_chunk_tokens
        started = time.perf_counter()
        for start in range(0, len(prompt_ids), chunk_tokens):
            chunk = prompt[:, start : start + chunk_tokens]
            last = start + chunk_tokens >= len(prompt_ids)
            await self._send(secure, MessageKind.PREFILL, chunk, start, last=last)
        position = len(prompt_ids)
        for index in range(self.max_new):
            token, times = await self._receive_token(secure)
            done = token in self.stop or index + 1 == self.max_new
            finish = (FINISH_STOP if token in self.stop else FINISH_LENGTH) if done else None
            now = time.perf_counter()
            yield TokenEvent(
                token_id=token,
                index=index,
                finish_reason=finish,
                stage_times_s=times,
                step_s=now - started,
                epoch=self.opened.epoch,
                stage_node_ids=tuple(s.node_id for s in self.opened.stages),
            )
            if done:
                return
            started = time.perf_counter()
            step = torch.tensor([[token]], dtype=torch.int64)
            await self._send(secure, MessageKind.DECODE, step, position, last=False)
            position += 1

    async def _send(
        self,
        secure: SecureStream,
        kind: MessageKind,
        ids: torch.Tensor,
        position: int,
        *,
        last: bool,
    ) -> None:
        header = ActivationHeader(
            kind=kind,
            epoch=self.opened.epoch,
            session_id=self.opened.session_id,
            step=self.step,
            first_position=position,
            dtype="i64",
            shape=tuple(ids.shape),
            last_chunk=last,
        )
        self.step += 1
        try:
            await secure.send_bulk(BULK_KIND_ACTIVATION, encode_header(header), tensor_body(ids))
        except TRANSPORT_ERRORS:
            # The first stage refused and closed: its ERROR may be waiting to be read.
            await self._receive_token(secure)
            raise

    async def _receive_token(self, secure: SecureStream) -> tuple[int, tuple[float, ...]]:
        first = self.opened.stages[0].node_id
        with trio.fail_after(self.settings.step_timeout_s):
            frame = await secure.receive_frame()
        if not isinstance(frame, BulkFrame) or frame.kind != BULK_KIND_ACTIVATION:
            raise StageError("unreachable", "the first stage ended the session", first)
        try:
            header = decode_header(frame.header)
            if header.kind == MessageKind.ERROR:
                error = StaleEpochError if header.error_code == "stale_epoch" else StageError
                raise error(header.error_code, header.error_detail)
            if header.kind != MessageKind.TOKEN or header.session_id != self.opened.session_id:
                raise StageError("bad_activation", f"unexpected {header.kind.name} answer", first)
            token = body_tensor(header, frame.body)
        except ActivationError as exc:
            raise StageError("bad_activation", f"the first stage answered: {exc}", first) from exc
        return int(token[0]), header.stage_times_s
