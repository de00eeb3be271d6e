"""OpenAI request bodies, checked field by field into frozen dataclasses.

Theory of operation
-------------------
``parse_completion`` and ``parse_chat`` take the decoded JSON body and return a
:class:`CompletionRequest` / :class:`ChatRequest`, or raise
:class:`~vramancer_node.serving.errors.RequestError` naming the parameter (OpenAI's
``param``) and what was wrong.  Types are exact: ``true`` is not a number, ``1.5`` is
not an integer.

Fields served: ``model``, ``prompt`` (a string, a list of token ids, or a list holding
one of those) / ``messages``, ``max_tokens`` (chat also ``max_completion_tokens``),
``temperature`` (0 to 2, default 1 as OpenAI), ``top_p`` (0 exclusive to 1),
``top_k`` (an extension: 0 or -1 means no limit), ``seed``, ``stop`` (a string or up to
four), ``stream`` and ``stream_options.include_usage``, ``n`` (only 1).  Other fields
(``user``, ``presence_penalty`` ...) are ignored, as most OpenAI-compatible servers do;
what would change the answer's meaning is refused rather than silently not honoured:
``logprobs``, ``n > 1``, ``echo``, ``suffix``, ``best_of > 1``, ``tools``,
``functions``, ``top_logprobs`` and a ``response_format`` other than text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vramancer_node.serving.errors import RequestError

STOP_STRINGS_MAX = 4
"""OpenAI's limit on stop sequences."""
STOP_CHARS_MAX = 256
"""Longest stop string (a bound on the text the stop matcher holds back)."""
TEMPERATURE_MAX = 2.0
SEED_MAX = 2**63 - 1
MESSAGES_MAX = 4096
PROMPT_CHARS_MAX = 8 << 20
"""Longest prompt or message text accepted (the context window refuses most before)."""
CHAT_ROLES = ("system", "developer", "user", "assistant", "tool")
DEFAULT_TEMPERATURE = 1.0


@dataclass(frozen=True, kw_only=True)
class Sampling:
    """The generation parameters common to both endpoints."""

    model: str
    max_tokens: int | None
    """None: the endpoint's default (see docs/serving.md)."""
    temperature: float
    top_p: float
    top_k: int
    seed: int | None
    """None: a fresh random seed per request."""
    stop: tuple[str, ...]
    stream: bool
    include_usage: bool
    """``stream_options.include_usage``: a last chunk carrying ``usage``."""


@dataclass(frozen=True, kw_only=True)
class CompletionRequest:
    sampling: Sampling
    prompt: str | tuple[int, ...]
    """Text, or token ids given directly."""


@dataclass(frozen=True, kw_only=True)
class ChatRequest:
    sampling: Sampling
    messages: tuple[Mapping[str, str], ...]
    """Each ``{"role", "content"}`` (plus ``name`` when given), content as plain text."""


def _fail(param: str, message: str, code: str = "invalid_type") -> RequestError:
    return RequestError(message, param=param, code=code)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(body: Mapping[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(key, f"{key} must be a number")
    if not low <= value <= high:
        raise _fail(key, f"{key} must be in [{low}, {high}], got {value}", "invalid_value")
    return float(value)


def _integer(body: Mapping[str, Any], key: str, low: int, high: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not _is_int(value):
        raise _fail(key, f"{key} must be an integer")
    if not low <= value <= high:
        raise _fail(key, f"{key} must be in [{low}, {high}], got {value}", "invalid_value")
    return int(value)


def _boolean(body: Mapping[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _fail(key, f"{key} must be a boolean")
    return value


def _stop(body: Mapping[str, Any]) -> tuple[str, ...]:
    value = body.get("stop")
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(stop, str) for stop in stops):
        raise _fail("stop", "stop must be a string or a list of strings")
    if len(stops) > STOP_STRINGS_MAX:
        raise _fail("stop", f"stop holds at most {STOP_STRINGS_MAX} strings", "invalid_value")
    if any(not 0 < len(stop) <= STOP_CHARS_MAX for stop in stops):
        raise _fail("stop", f"stop strings must be 1 to {STOP_CHARS_MAX} chars", "invalid_value")
    return tuple(dict.fromkeys(stops))


def _sampling(body: Mapping[str, Any], max_tokens_keys: tuple[str, ...]) -> Sampling:
    model = body.get("model")
    if model is None:
        raise _fail("model", "you must provide a model parameter", "missing_required_parameter")
    if not isinstance(model, str) or not model:
        raise _fail("model", "model must be a non-empty string")
    max_tokens = None
    for key in max_tokens_keys:
        max_tokens = max_tokens or _integer(body, key, 1, 2**31 - 1)
    if _integer(body, "n", 1, 2**31 - 1) not in (None, 1):
        raise _fail("n", "only n=1 is supported", "unsupported_value")
    if body.get("logprobs") not in (None, False):
        raise _fail("logprobs", "logprobs are not supported", "unsupported_value")
    top_p = _number(body, "top_p", 1.0, 0.0, 1.0)
    if top_p == 0:
        raise _fail("top_p", "top_p must be > 0", "invalid_value")
    top_k = _integer(body, "top_k", -1, 2**31 - 1) or 0
    stream = _boolean(body, "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _fail("stream_options", "stream_options must be an object")
    include_usage = _boolean(options or {}, "include_usage")
    return Sampling(
        model=model,
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", DEFAULT_TEMPERATURE, 0.0, TEMPERATURE_MAX),
        top_p=top_p,
        top_k=max(top_k, 0),
        seed=_integer(body, "seed", -SEED_MAX - 1, SEED_MAX),
        stop=_stop(body),
        stream=stream,
        include_usage=stream and include_usage,
    )


def _object(body: object) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object", code="invalid_body")
    return body


def _refuse_unsupported(fields: Mapping[str, Any], unsupported: Mapping[str, object]) -> None:
    """Refuse a field whose value asks for something not served (``None`` or the
    listed default is fine)."""
    for key, default in unsupported.items():
        value = fields.get(key)
        if value is not None and value != default:
            raise _fail(key, f"{key}={str(value)[:40]} is not supported", "unsupported_value")


def parse_completion(body: object) -> CompletionRequest:
    """A ``POST /v1/completions`` body."""
    fields = _object(body)
    sampling = _sampling(fields, ("max_tokens",))
    _refuse_unsupported(fields, {"echo": False, "suffix": "", "best_of": 1})
    prompt = fields.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        if not prompt or len(prompt) > PROMPT_CHARS_MAX:
            raise _fail("prompt", f"prompt must be 1 to {PROMPT_CHARS_MAX} chars", "invalid_value")
        return CompletionRequest(sampling=sampling, prompt=prompt)
    if isinstance(prompt, list) and prompt and all(_is_int(t) and t >= 0 for t in prompt):
        return CompletionRequest(sampling=sampling, prompt=tuple(prompt))
    if prompt is None:
        raise _fail("prompt", "you must provide a prompt", "missing_required_parameter")
    raise _fail(
        "prompt", "prompt must be a non-empty string or a non-empty list of token ids (one only)"
    )


def _content(value: object, index: int) -> str:
    """Message content: a string, null, or a list of text parts joined."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for part in value:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise _fail(f"messages[{index}].content", "only text content parts are supported")
            text = part.get("text")
            if not isinstance(text, str):
                raise _fail(f"messages[{index}].content", "a text part needs a string 'text'")
            texts.append(text)
        return "".join(texts)
    raise _fail(f"messages[{index}].content", "content must be a string or a list of parts")


def parse_chat(body: object) -> ChatRequest:
    """A ``POST /v1/chat/completions`` body."""
    fields = _object(body)
    sampling = _sampling(fields, ("max_completion_tokens", "max_tokens"))
    _refuse_unsupported(fields, {"tools": [], "functions": [], "top_logprobs": 0})
    response_format = fields.get("response_format")
    if response_format is not None and response_format != {"type": "text"}:
        raise _fail("response_format", "only {'type': 'text'} is supported", "unsupported_value")
    messages = fields.get("messages")
    if messages is None:
        raise _fail("messages", "you must provide messages", "missing_required_parameter")
    if not isinstance(messages, list) or not 0 < len(messages) <= MESSAGES_MAX:
        raise _fail("messages", f"messages must be a list of 1 to {MESSAGES_MAX} messages")
    parsed: list[Mapping[str, str]] = []
    total_chars = 0
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _fail(f"messages[{index}]", "each message must be an object")
        role = message.get("role")
        if role not in CHAT_ROLES:
            raise _fail(
                f"messages[{index}].role",
                f"role must be one of {', '.join(CHAT_ROLES)}, got {str(role)[:40]!r}",
                "invalid_value",
            )
        content = _content(message.get("content"), index)
        total_chars += len(content)
        item = {"role": role, "content": content}
        name = message.get("name")
        if name is not None:
            if not isinstance(name, str):
                raise _fail(f"messages[{index}].name", "name must be a string")
            item["name"] = name
        parsed.append(item)
    if total_chars > PROMPT_CHARS_MAX:
        message = f"messages hold more than {PROMPT_CHARS_MAX} chars"
        raise _fail("messages", message, "invalid_value")
    return ChatRequest(sampling=sampling, messages=tuple(parsed))
