"""The OpenAI-compatible HTTP API: ``/v1/models``, ``/v1/completions``,
``/v1/chat/completions``, streamed or not.

Theory of operation
-------------------
A request is checked (:mod:`~vramancer_node.serving.openai_requests`), its model looked
up in the :class:`~vramancer_node.serving.generator.TextGenerator`, its prompt turned
into token ids with the checkpoint's tokenizer (loaded once per model, in a worker
thread) and checked against the context window, all *before* the first byte of the
answer: every client mistake is a 4xx with OpenAI's error object.

Then the tokens stream from the generator through an incremental decoder (whole
characters only) and a stop-string matcher (:mod:`~vramancer_node.serving.textgen`).
Without ``stream`` the pieces are joined into one JSON answer; with it, each piece
is a server-sent event ``data: {chunk}\\n\\n`` and the stream ends with
``data: [DONE]\\n\\n``.  When a stop string matches, the token stream is closed,
which stops the generation.

Defaults: ``max_tokens`` absent is 16 for completions (OpenAI's default) and the rest
of the context window for chat.  A prompt that fills the context, or a ``max_tokens``
that does not fit after it, is refused with code ``context_length_exceeded``.

Error handling
--------------
:class:`RequestError` -> its status (400, 404) and OpenAI's shape
``{"error": {"message", "type", "param", "code"}}``.  A tokenizer or generation failure
is a 500 of type ``server_error``.  A failure after a stream started is sent as one
last ``data: {"error": ...}`` event before ``[DONE]``: the status line is already gone.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from vramancer_node.serving.errors import (
    ChatTemplateError,
    GenerationError,
    ModelNotFoundError,
    RequestError,
    TokenizerError,
    UnencodableTextError,
)
from vramancer_node.serving.generator import ModelInfo, TextGenerator
from vramancer_node.serving.openai_requests import Sampling, parse_chat, parse_completion
from vramancer_node.serving.textgen import Piece, collect, generate_text, sampling_params
from vramancer_node.serving.tokenizer import Tokenizer, load_tokenizer

COMPLETION_MAX_TOKENS_DEFAULT = 16
"""OpenAI's default ``max_tokens`` for /v1/completions."""
OWNED_BY = "vramancer"
SSE_MEDIA_TYPE = "text/event-stream"
SSE_DONE = b"data: [DONE]\n\n"


def error_body(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def _error_response(exc: Exception) -> JSONResponse:
    if isinstance(exc, RequestError):
        body = error_body(exc.message, exc.error_type, exc.param, exc.code)
        return JSONResponse(body, status_code=exc.status_code)
    return JSONResponse(error_body(str(exc), "server_error"), status_code=500)


def _sse(event: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\n\n"


class OpenAIService:
    """The endpoints, over a generator obtained from ``generator()`` at each request
    (so the node can switch generators while running)."""

    def __init__(self, generator: Callable[[], TextGenerator]) -> None:
        self._generator = generator
        self._tokenizers: dict[str, Tokenizer] = {}
        self._tokenizer_lock = trio.Lock()

    def routes(self) -> list[Route]:
        return [
            Route("/v1/models", self._endpoint(self.list_models), methods=["GET"]),
            Route("/v1/models/{model:path}", self._endpoint(self.get_model), methods=["GET"]),
            Route("/v1/completions", self._endpoint(self.completions), methods=["POST"]),
            Route("/v1/chat/completions", self._endpoint(self.chat), methods=["POST"]),
        ]

    @staticmethod
    def _endpoint(
        handler: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except (RequestError, GenerationError, TokenizerError) as exc:
                return _error_response(exc)

        return endpoint

    # -- models ---------------------------------------------------------------

    @staticmethod
    def _model_object(info: ModelInfo) -> dict[str, Any]:
        return {
            "id": info.model_id,
            "object": "model",
            "created": info.created_s,
            "owned_by": OWNED_BY,
            "context_length": info.context_tokens,
        }

    async def list_models(self, request: Request) -> Response:
        data = [self._model_object(info) for info in self._generator().models()]
        return JSONResponse({"object": "list", "data": data})

    async def get_model(self, request: Request) -> Response:
        info = self._info(self._generator(), request.path_params["model"])
        return JSONResponse(self._model_object(info))

    @staticmethod
    def _info(generator: TextGenerator, model_id: str) -> ModelInfo:
        for info in generator.models():
            if info.model_id == model_id:
                return info
        raise ModelNotFoundError(model_id)

    async def _tokenizer(self, info: ModelInfo) -> Tokenizer:
        async with self._tokenizer_lock:
            key = str(info.directory)
            if key not in self._tokenizers:
                self._tokenizers[key] = await trio.to_thread.run_sync(
                    load_tokenizer, info.directory
                )
            return self._tokenizers[key]

    # -- completions ------------------------------------------------------------

    async def completions(self, request: Request) -> Response:
        parsed = parse_completion(await _json_body(request))
        generator = self._generator()
        info = self._info(generator, parsed.sampling.model)
        tokenizer = await self._tokenizer(info)
        prompt = parsed.prompt
        if isinstance(prompt, str):
            prompt_ids = _encode(lambda: tokenizer.encode(prompt), "prompt")
        else:
            prompt_ids = list(prompt)
            if max(prompt_ids) >= info.vocab_size:
                raise RequestError(
                    f"prompt token ids must be < {info.vocab_size} (the model's vocabulary)",
                    param="prompt",
                    code="invalid_value",
                )
        params = sampling_params(
            parsed.sampling, info, len(prompt_ids), tokenizer, COMPLETION_MAX_TOKENS_DEFAULT
        )
        pieces = generate_text(generator, info, tokenizer, prompt_ids, params, parsed.sampling.stop)
        envelope = {
            "id": f"cmpl-{secrets.token_hex(12)}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": info.model_id,
            "system_fingerprint": None,
        }

        def choice(piece: Piece) -> dict[str, Any]:
            return {
                "index": 0,
                "text": piece.text,
                "logprobs": None,
                "finish_reason": piece.finish_reason,
            }

        if parsed.sampling.stream:
            return _stream(pieces, envelope, choice, len(prompt_ids), parsed.sampling)
        text, last = await collect(pieces)
        body = {
            **envelope,
            "choices": [choice(dataclasses.replace(last, text=text))],
            "usage": _usage(len(prompt_ids), last.completion_tokens),
        }
        return JSONResponse(body)

    # -- chat -----------------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        parsed = parse_chat(await _json_body(request))
        generator = self._generator()
        info = self._info(generator, parsed.sampling.model)
        tokenizer = await self._tokenizer(info)
        prompt_ids = _encode(lambda: tokenizer.apply_chat_template(parsed.messages), "messages")
        params = sampling_params(parsed.sampling, info, len(prompt_ids), tokenizer, None)
        pieces = generate_text(generator, info, tokenizer, prompt_ids, params, parsed.sampling.stop)
        envelope = {
            "id": f"chatcmpl-{secrets.token_hex(12)}",
            "object": "chat.completion.chunk" if parsed.sampling.stream else "chat.completion",
            "created": int(time.time()),
            "model": info.model_id,
            "system_fingerprint": None,
        }
        if parsed.sampling.stream:
            started = False

            def delta(piece: Piece) -> dict[str, Any]:
                nonlocal started
                content: dict[str, Any] = {"content": piece.text} if piece.text else {}
                if not started:
                    content = {"role": "assistant", "content": piece.text}
                    started = True
                return {
                    "index": 0,
                    "delta": content,
                    "logprobs": None,
                    "finish_reason": piece.finish_reason,
                }

            return _stream(pieces, envelope, delta, len(prompt_ids), parsed.sampling)
        text, last = await collect(pieces)
        message = {"role": "assistant", "content": text}
        body = {
            **envelope,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": last.finish_reason,
                }
            ],
            "usage": _usage(len(prompt_ids), last.completion_tokens),
        }
        return JSONResponse(body)


async def _json_body(request: Request) -> object:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(
            f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
        ) from exc


def _encode(encode: Callable[[], list[int]], param: str) -> list[int]:
    try:
        ids = encode()
    except UnencodableTextError as exc:
        raise RequestError(str(exc), param=param, code="unencodable_text") from exc
    except ChatTemplateError as exc:  # e.g. the template's raise_exception on bad roles
        raise RequestError(str(exc), param=param, code="chat_template_error") from exc
    if not ids:
        raise RequestError(f"{param} encodes to no tokens", param=param, code="invalid_value")
    return ids


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _stream(
    pieces: AsyncIterator[Piece],
    envelope: dict[str, Any],
    choice: Callable[[Piece], dict[str, Any]],
    prompt_tokens: int,
    sampling: Sampling,
) -> StreamingResponse:
    async def events() -> AsyncIterator[bytes]:
        completion_tokens = 0
        try:
            async for piece in pieces:
                completion_tokens = piece.completion_tokens
                yield _sse({**envelope, "choices": [choice(piece)]})
        except (GenerationError, RequestError) as exc:
            error_type = exc.error_type if isinstance(exc, RequestError) else "server_error"
            yield _sse(error_body(str(exc), error_type))
        else:
            if sampling.include_usage:
                usage = _usage(prompt_tokens, completion_tokens)
                yield _sse({**envelope, "choices": [], "usage": usage})
        yield SSE_DONE

    return StreamingResponse(
        events(), media_type=SSE_MEDIA_TYPE, headers={"cache-control": "no-cache"}
    )


def openai_routes(generator: Callable[[], TextGenerator]) -> list[Route]:
    """The OpenAI routes for the node's API (``*openai_routes(node.text_generator)``)."""
    return OpenAIService(generator).routes()
