"""The pipeline's HTTP endpoints, mounted into the node's local API.

Endpoints
---------
``POST /v1/generate``   generate with the cluster's pipeline; the answer streams JSON
                        lines (``application/x-ndjson``, schema
                        ``vramancer.generate.v1``), one event per line::

                          {"event": "start", "model", "epoch", "stages": [node ids],
                           "prompt_tokens"}
                          {"event": "token", "index", "token_id", "text"?,
                           "stage_times_s": [...], "step_s"}
                          {"event": "done", "token_ids", "finish_reason", "text"?,
                           "timings": {time_to_first_token_s, decode_tokens_per_s,
                                       total_s, stage_times_s_total}}
                          {"event": "error", "error", "code"}    (after the start only)

                        Request: ``{"model": str, "prompt_ids": [int] | "prompt": str,
                        "max_tokens": int, "temperature", "top_k", "top_p", "seed",
                        "stop_token_ids": [int]}``.  A text prompt needs the model's
                        tokenizer (``vramancer_node.serving.tokenizer``).
``GET /v1/pipeline``    models served, loaded stages and session counters
                        (``vramancer.pipeline.v1``)
``GET /v1/pipeline/placements``          this node's placements
                                         (``vramancer.placements.v1``)
``PUT /v1/pipeline/placements/{model}``  put a placement in force: ``{"stages": [...],
                                         "epoch"?}``, ``{"strategy": "even", "nodes":
                                         [node ids]}`` or ``{"strategy": "computed"}``

Errors before the first token are ``vramancer.error.v1`` bodies with a ``code``: 400
bad request or prompt too long, 404 unknown model, 409 stale epoch, 502 a stage failed,
503 no placement.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from vramancer_node.pipeline.driver import TokenEvent
from vramancer_node.pipeline.errors import (
    ContextTooLongError,
    PipelineError,
    PlacementUnavailableError,
    StageError,
    StaleEpochError,
    UnknownModelError,
)
from vramancer_node.pipeline.placements import (
    even_placement,
    placement_from_json,
    placement_to_json,
)
from vramancer_node.runtime import CheckpointError, SamplingParams

if TYPE_CHECKING:
    from vramancer_node.daemon import Node

JSON_LINES_MEDIA_TYPE = "application/x-ndjson"
GENERATE_SCHEMA = "vramancer.generate.v1"
MAX_TOKENS_DEFAULT = 16
PROMPT_IDS_MAX = 1 << 20


def _error(status_code: int, message: str, code: str = "bad_request") -> JSONResponse:
    body = {"schema": "vramancer.error.v1", "error": message, "code": code}
    return JSONResponse(body, status_code=status_code)


def _pipeline_error(exc: Exception) -> JSONResponse:
    if isinstance(exc, UnknownModelError):
        return _error(404, str(exc), "unknown_model")
    if isinstance(exc, ContextTooLongError):
        return _error(400, str(exc), "context_exceeded")
    if isinstance(exc, StaleEpochError):
        return _error(409, str(exc), "stale_epoch")
    if isinstance(exc, StageError):
        return _error(502, str(exc), exc.code)
    if isinstance(exc, PlacementUnavailableError):
        return _error(503, str(exc), "no_placement")
    if isinstance(exc, (PipelineError, CheckpointError)):
        return _error(500, str(exc), "pipeline")
    return _error(400, str(exc))


def _line(body: dict[str, Any]) -> bytes:
    return (json.dumps({"schema": GENERATE_SCHEMA, **body}) + "\n").encode()


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise ValueError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object")
    return body


def _int_list(body: dict[str, Any], key: str) -> list[int]:
    value = body.get(key, [])
    if not isinstance(value, list) or len(value) > PROMPT_IDS_MAX:
        raise ValueError(f"{key} must be a list of at most {PROMPT_IDS_MAX} integers")
    if any(isinstance(item, bool) or not isinstance(item, int) for item in value):
        raise ValueError(f"{key} must hold integers only")
    return value


def _sampling(body: dict[str, Any], stop_ids: list[int]) -> SamplingParams:
    def number(key: str, default: float) -> float:
        value = body.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key} must be a number")
        return float(value)

    def integer(key: str, default: int) -> int:
        value = body.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key} must be an integer")
        return value

    return SamplingParams(
        max_new_tokens=integer("max_tokens", MAX_TOKENS_DEFAULT),
        temperature=number("temperature", 0.0),
        top_k=integer("top_k", 0),
        top_p=number("top_p", 1.0),
        seed=integer("seed", 0),
        stop_token_ids=tuple(stop_ids),
    )


def _encode_prompt(node: Node, model_id: str, text: str) -> tuple[Any, list[int]]:
    """The model's tokenizer and the ids of ``text`` (ValueError saying what failed)."""
    try:
        from vramancer_node.serving.errors import TokenizerError, UnencodableTextError
        from vramancer_node.serving.tokenizer import load_tokenizer
    except ImportError as exc:
        raise ValueError(
            f"text prompts need the tokenizer module, which is not available ({exc}); "
            "pass prompt_ids"
        ) from None
    try:
        tokenizer = load_tokenizer(node.models.entry(model_id).directory)
        return tokenizer, list(tokenizer.encode(text))
    except (TokenizerError, UnencodableTextError) as exc:
        raise ValueError(f"{model_id}: cannot tokenize the prompt: {exc}") from None


def pipeline_routes(node: Node) -> list[Route]:
    """The pipeline routes of ``node``'s API."""

    async def generate(request: Request) -> Response:
        try:
            body = await _json_object(request)
            model_id = body.get("model")
            if not isinstance(model_id, str):
                raise ValueError("model must be a string")
            tokenizer = None
            if "prompt" in body:
                if not isinstance(body["prompt"], str):
                    raise ValueError("prompt must be a string")
                tokenizer, prompt_ids = _encode_prompt(node, model_id, body["prompt"])
            else:
                prompt_ids = _int_list(body, "prompt_ids")
            stop_ids = _int_list(body, "stop_token_ids")
            if tokenizer is not None and "stop_token_ids" not in body:
                stop_ids = list(tokenizer.eos_token_ids)
            params = _sampling(body, stop_ids)
            stream = node.generate_stream(model_id, prompt_ids, params)
            started = time.perf_counter()
            first = await stream.__anext__()
        except (PipelineError, CheckpointError, ValueError) as exc:
            return _pipeline_error(exc)
        except StopAsyncIteration:
            return _error(500, "the generation ended without a token", "pipeline")
        lines = _generate_lines(model_id, len(prompt_ids), first, stream, tokenizer, started)
        return StreamingResponse(lines, media_type=JSON_LINES_MEDIA_TYPE)

    async def status(request: Request) -> Response:
        return JSONResponse({"schema": "vramancer.pipeline.v1", **node.pipeline_status()})

    async def placements(request: Request) -> Response:
        items = [
            placement_to_json(model_id, epoch, placement)
            for model_id, (epoch, placement) in sorted(node.placements.all().items())
        ]
        return JSONResponse({"schema": "vramancer.placements.v1", "placements": items})

    async def set_placement(request: Request) -> Response:
        model_id = request.path_params["model"]
        if node.config.runtime.placement_source != "local":
            return _error(
                409,
                "placements are committed through consensus on this node "
                "(runtime.placement_source); use `vramancer placement propose`",
                "placement_source",
            )
        try:
            body = await _json_object(request)
            layers = node.models.config(model_id).num_hidden_layers
            strategy = body.get("strategy", "explicit")
            if strategy == "computed":
                config = node.models.config(model_id)
                context = min(node.config.runtime.context_tokens, config.max_position_embeddings)
                epoch, placement = await node.placements.propose_placement(
                    node.models.entry(model_id).directory, context, node.config.runtime.dtype
                )
            else:
                if strategy == "even":
                    nodes = body.get("nodes") or [m["node_id"] for m in node.peers_view()]
                    placement = even_placement(nodes, layers)
                elif strategy == "explicit":
                    placement = placement_from_json(body)
                else:
                    raise ValueError("strategy must be explicit, even or computed")
                if placement.num_layers != layers:
                    raise ValueError(f"the stages cover {placement.num_layers} of {layers} layers")
                epoch_value = body.get("epoch")
                if epoch_value is not None and (
                    isinstance(epoch_value, bool) or not isinstance(epoch_value, int)
                ):
                    raise ValueError("epoch must be an integer")
                epoch, placement = node.placements.set_placement(model_id, placement, epoch_value)
        except (PipelineError, CheckpointError, ValueError, TypeError) as exc:
            return _pipeline_error(exc)
        body = placement_to_json(model_id, epoch, placement)
        return JSONResponse({"schema": "vramancer.placement.v1", **body})

    return [
        Route("/v1/generate", generate, methods=["POST"]),
        Route("/v1/pipeline", status),
        Route("/v1/pipeline/placements", placements),
        Route("/v1/pipeline/placements/{model}", set_placement, methods=["PUT"]),
    ]


async def _generate_lines(
    model_id: str,
    prompt_tokens: int,
    first: TokenEvent,
    stream: AsyncIterator[TokenEvent],
    tokenizer: Any,
    started: float,
) -> AsyncIterator[bytes]:
    decoder = tokenizer.incremental_decoder() if tokenizer is not None else None
    yield _line(
        {
            "event": "start",
            "model": model_id,
            "epoch": first.epoch,
            "stages": list(first.stage_node_ids),
            "prompt_tokens": prompt_tokens,
        }
    )
    ttft_s = time.perf_counter() - started
    events = [first]
    event = first
    try:
        while True:
            token_line: dict[str, Any] = {
                "event": "token",
                "index": event.index,
                "token_id": event.token_id,
                "stage_times_s": list(event.stage_times_s),
                "step_s": event.step_s,
            }
            if decoder is not None:
                token_line["text"] = decoder.push(event.token_id)
            yield _line(token_line)
            if event.finish_reason is not None:
                break
            event = await stream.__anext__()
            events.append(event)
    except (PipelineError, ValueError) as exc:
        code = exc.code if isinstance(exc, StageError) else "pipeline"
        yield _line({"event": "error", "error": str(exc), "code": code})
        return
    finally:
        await _aclose(stream)
    yield _line(_done(events, ttft_s, time.perf_counter() - started, decoder))


async def _aclose(stream: AsyncIterator[TokenEvent]) -> None:
    close: Callable[[], Any] | None = getattr(stream, "aclose", None)
    if close is not None:
        await close()


def _done(events: list[TokenEvent], ttft_s: float, total_s: float, decoder: Any) -> dict[str, Any]:
    decode_s = total_s - ttft_s
    stages = max(len(e.stage_times_s) for e in events)
    totals = [
        sum(e.stage_times_s[i] for e in events if i < len(e.stage_times_s)) for i in range(stages)
    ]
    done: dict[str, Any] = {
        "event": "done",
        "token_ids": [e.token_id for e in events],
        "finish_reason": events[-1].finish_reason,
        "timings": {
            "time_to_first_token_s": ttft_s,
            "decode_tokens_per_s": (len(events) - 1) / decode_s if decode_s > 0 else None,
            "total_s": total_s,
            "stage_times_s_total": totals,
        },
    }
    if decoder is not None:
        decoder.flush()
        done["text"] = decoder.text()
    return done
