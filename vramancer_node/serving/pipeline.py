"""The cluster's pipeline as a :class:`~vramancer_node.serving.generator.TextGenerator`.

Theory of operation
-------------------
The OpenAI endpoints generate through the node's ``generate_stream`` (the pipeline
driver, :mod:`vramancer_node.pipelinewiring`): the node that received the request
drives the stages wherever the placement put them.  This adapter lists the node's
models (``runtime.models``, context ``min(runtime.context_tokens,
max_position_embeddings)``) and translates the pipeline's token events and errors at
the boundary: an unknown model becomes ``ModelNotFoundError`` (404), a prompt longer
than the context a ``RequestError`` (400), every other pipeline failure a
``GenerationError`` (500, or an error event once streaming).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from vramancer_node.pipeline.errors import ContextTooLongError, PipelineError, UnknownModelError
from vramancer_node.runtime import SamplingParams
from vramancer_node.serving.errors import GenerationError, ModelNotFoundError, RequestError
from vramancer_node.serving.generator import GeneratedToken, ModelInfo, model_info


class PipelineNode(Protocol):
    """What the adapter needs from :class:`vramancer_node.daemon.Node`."""

    config: Any
    models: Any
    """The node's :class:`~vramancer_node.pipeline.ModelRegistry`."""

    def generate_stream(
        self, model_id: str, prompt_ids: Sequence[int], params: SamplingParams
    ) -> AsyncIterator[Any]: ...


class PipelineGenerator:
    """Generates with the node's pipeline (see the module doc)."""

    def __init__(self, node: PipelineNode) -> None:
        self._node = node

    def models(self) -> Sequence[ModelInfo]:
        infos = []
        for model_id in self._node.models.ids():
            directory = self._node.models.entry(model_id).directory
            info = model_info(model_id, directory)
            context = min(self._node.config.runtime.context_tokens, info.context_tokens)
            infos.append(dataclasses.replace(info, context_tokens=context))
        return infos

    async def generate(
        self, model_id: str, prompt_ids: Sequence[int], params: SamplingParams
    ) -> AsyncIterator[GeneratedToken]:
        try:
            stream = self._node.generate_stream(model_id, prompt_ids, params)
            async with contextlib.aclosing(stream):  # type: ignore[type-var]
                async for event in stream:
                    yield GeneratedToken(
                        token_id=event.token_id,
                        finish_reason=event.finish_reason,
                        stage_times_s=tuple(event.stage_times_s),
                    )
        except UnknownModelError as exc:
            raise ModelNotFoundError(model_id) from exc
        except ContextTooLongError as exc:
            raise RequestError(str(exc), param="messages", code="context_length_exceeded") from exc
        except (PipelineError, ValueError) as exc:
            raise GenerationError(f"{model_id}: {exc}") from exc
