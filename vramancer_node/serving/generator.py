"""The boundary the OpenAI API generates through, and its single-process implementation.

Theory of operation
-------------------
The HTTP layer only needs two things from whatever runs the model: which models exist
(with their context length) and, for a prompt of token ids and sampling parameters,
an async stream of generated tokens.  :class:`TextGenerator` is that boundary.  The
cluster's pipeline (``node.generate_stream``) is one implementation; :class:`LocalGenerator`
is the other, running every layer in this process with :mod:`vramancer_node.runtime`.

:class:`LocalGenerator` loads a model on first use (one stage holding every layer,
loaded in a worker thread) and keeps it.  Each generation gets its own KV cache bounded
by ``prompt + max_new_tokens`` positions; prefill and every decode step run in a worker
thread so the event loop keeps serving.  Closing the token stream early (a stop string
matched, the client went away) stops the generation after the current step.

Resource handling
-----------------
Generations share the CPU or GPU, so at most ``concurrent_generations`` run at once;
the others wait their turn (fair, FIFO: a ``trio.CapacityLimiter``).  Loaded models are
kept for the life of the generator: a node serves a handful of models, not an
unbounded set.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
import trio

from vramancer_node.runtime import (
    CheckpointError,
    KVCacheFullError,
    SamplingParams,
    read_model_config,
)
from vramancer_node.runtime.generate import DEFAULT_PREFILL_CHUNK_TOKENS, run_pipeline
from vramancer_node.runtime.kv_cache import KVCache
from vramancer_node.runtime.sampler import Sampler
from vramancer_node.runtime.stage import Stage, load_stage
from vramancer_node.serving.errors import GenerationError, ModelNotFoundError

FINISH_STOP = "stop"
"""A stop token (EOS) or a stop string ended the text."""
FINISH_LENGTH = "length"
"""``max_tokens`` (or the context) ended the text."""
CONCURRENT_GENERATIONS_DEFAULT = 1
RUNTIME_ERRORS = (CheckpointError, KVCacheFullError, ValueError, RuntimeError, OSError)
"""What the runtime raises on a bad checkpoint or input (torch raises RuntimeError)."""


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """A model a generator serves."""

    model_id: str
    directory: Path
    """The checkpoint directory (tokenizer files are read from it)."""
    context_tokens: int
    """Most positions one sequence may use: prompt plus generated tokens."""
    vocab_size: int
    created_s: int
    """Unix time the checkpoint was written (its config.json's mtime), for /v1/models."""


@dataclass(frozen=True, kw_only=True)
class GeneratedToken:
    """One token of a generation."""

    token_id: int
    finish_reason: str | None = None
    """``stop`` or ``length`` on the last token, else None."""
    stage_times_s: tuple[float, ...] = ()
    """Time each pipeline stage spent on this token, when the generator measures it."""


class TextGenerator(Protocol):
    """What the OpenAI API needs from the thing that runs models."""

    def models(self) -> Sequence[ModelInfo]:
        """Every model served, sorted by id."""
        ...

    def generate(
        self, model_id: str, prompt_ids: Sequence[int], params: SamplingParams
    ) -> AsyncIterator[GeneratedToken]:
        """Stream the tokens generated after ``prompt_ids``; the last one carries the
        finish reason.  Closing the iterator stops the generation.  An unknown
        model raises :class:`~vramancer_node.serving.errors.ModelNotFoundError`."""
        ...


def model_info(model_id: str, directory: Path, context_tokens: int | None = None) -> ModelInfo:
    """The :class:`ModelInfo` of a checkpoint (GenerationError if config.json is bad)."""
    try:
        config = read_model_config(directory)
        created_s = int((directory / "config.json").stat().st_mtime)
    except (CheckpointError, OSError) as exc:
        raise GenerationError(f"model {model_id!r}: {exc}") from exc
    return ModelInfo(
        model_id=model_id,
        directory=directory,
        context_tokens=context_tokens or config.max_position_embeddings,
        vocab_size=config.vocab_size,
        created_s=created_s,
    )


class _Session:
    """The state of one generation on one stage; its methods run in a worker thread."""

    def __init__(self, stage: Stage, prompt_ids: Sequence[int], params: SamplingParams) -> None:
        self.stage = stage
        self.prompt = torch.tensor([list(prompt_ids)], dtype=torch.int64)
        self.cache: KVCache = stage.new_kv_cache(
            max_tokens=len(prompt_ids) + params.max_new_tokens - 1
        )
        self.sampler = Sampler(params)
        self.position = len(prompt_ids)

    def prefill(self) -> int:
        with torch.inference_mode():
            logits = torch.empty(0)
            for start in range(0, self.prompt.shape[1], DEFAULT_PREFILL_CHUNK_TOKENS):
                chunk = self.prompt[:, start : start + DEFAULT_PREFILL_CHUNK_TOKENS]
                positions = torch.arange(start, start + chunk.shape[1])
                logits = run_pipeline([self.stage], chunk, positions, [self.cache], last_only=True)
            return int(self.sampler.sample(logits[:, -1])[0])

    def step(self, token: int) -> int:
        with torch.inference_mode():
            logits = run_pipeline(
                [self.stage],
                torch.tensor([[token]]),
                torch.tensor([self.position]),
                [self.cache],
                last_only=True,
            )
        self.position += 1
        return int(self.sampler.sample(logits[:, -1])[0])


class LocalGenerator:
    """A :class:`TextGenerator` running whole models in this process."""

    def __init__(
        self,
        model_dirs: Mapping[str, Path],
        *,
        dtype: str = "fp32",
        device: str = "cpu",
        concurrent_generations: int = CONCURRENT_GENERATIONS_DEFAULT,
    ) -> None:
        self._dirs = dict(model_dirs)
        self._dtype = dtype
        self._device = device
        self._infos: dict[str, ModelInfo] = {}
        self._stages: dict[str, Stage] = {}
        self._load_lock = trio.Lock()
        self._limiter = trio.CapacityLimiter(concurrent_generations)

    def models(self) -> Sequence[ModelInfo]:
        return [self.info(model_id) for model_id in sorted(self._dirs)]

    def info(self, model_id: str) -> ModelInfo:
        if model_id not in self._dirs:
            raise ModelNotFoundError(model_id)
        if model_id not in self._infos:
            self._infos[model_id] = model_info(model_id, self._dirs[model_id])
        return self._infos[model_id]

    async def _stage(self, model_id: str) -> Stage:
        info = self.info(model_id)
        async with self._load_lock:
            if model_id not in self._stages:
                try:
                    self._stages[model_id] = await trio.to_thread.run_sync(self._load, info)
                except RUNTIME_ERRORS as exc:
                    raise GenerationError(f"model {model_id!r} cannot be loaded: {exc}") from exc
        return self._stages[model_id]

    def _load(self, info: ModelInfo) -> Stage:
        config = read_model_config(info.directory)
        return load_stage(
            info.directory,
            0,
            config.num_hidden_layers,
            has_embedding=True,
            has_head=True,
            dtype=self._dtype,
            device=self._device,
            config=config,
        )

    async def generate(
        self, model_id: str, prompt_ids: Sequence[int], params: SamplingParams
    ) -> AsyncIterator[GeneratedToken]:
        if not prompt_ids:
            raise ValueError("empty prompt")
        stage = await self._stage(model_id)
        stop = set(params.stop_token_ids)
        async with self._limiter:
            try:
                session = _Session(stage, prompt_ids, params)
                started = time.perf_counter()
                token = await trio.to_thread.run_sync(session.prefill)
            except RUNTIME_ERRORS as exc:
                raise GenerationError(f"model {model_id!r}: {exc}") from exc
            count = 1
            while True:
                times_s = (time.perf_counter() - started,)
                if token in stop or count == params.max_new_tokens:
                    reason = FINISH_STOP if token in stop else FINISH_LENGTH
                    yield GeneratedToken(
                        token_id=token, finish_reason=reason, stage_times_s=times_s
                    )
                    return
                yield GeneratedToken(token_id=token, stage_times_s=times_s)
                started = time.perf_counter()
                try:
                    token = await trio.to_thread.run_sync(session.step, token)
                except RUNTIME_ERRORS as exc:
                    raise GenerationError(f"model {model_id!r}: {exc}") from exc
                count += 1
