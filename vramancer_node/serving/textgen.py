"""From a request's parameters and a token stream to text pieces: the context check,
the sampling parameters, incremental detokenisation and stop strings.

Theory of operation
-------------------
:func:`sampling_params` turns the checked request into the runtime's
``SamplingParams`` and refuses what does not fit the context window (a prompt that
fills it, a ``max_tokens`` that does not fit after it).  :func:`generate_text` runs
the generator and yields :class:`Piece` s of text: each token goes through the
tokenizer's incremental decoder (whole characters only) and a
:class:`~vramancer_node.serving.stops.StopMatcher`; when a stop string matches, the
token stream is closed, which stops the generation.  EOS tokens end the text and are
not part of it; they count as generated tokens.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from vramancer_node.runtime import SamplingParams
from vramancer_node.serving.errors import RequestError
from vramancer_node.serving.generator import FINISH_LENGTH, FINISH_STOP, ModelInfo, TextGenerator
from vramancer_node.serving.openai_requests import Sampling
from vramancer_node.serving.stops import StopMatcher
from vramancer_node.serving.tokenizer import Tokenizer

SEED_BITS = 63
"""A request without a seed gets a fresh random one of this many bits."""


@dataclass(frozen=True, kw_only=True)
class Piece:
    """Text produced since the previous piece."""

    text: str
    finish_reason: str | None
    completion_tokens: int
    """Tokens generated so far (a stop token included)."""


def sampling_params(
    sampling: Sampling,
    info: ModelInfo,
    prompt_tokens: int,
    tokenizer: Tokenizer,
    max_tokens_default: int | None,
) -> SamplingParams:
    """The runtime's parameters for a request, checked against the context window."""
    room = info.context_tokens - prompt_tokens
    param = "max_tokens" if sampling.max_tokens is not None else "messages"
    if room <= 0:
        raise RequestError(
            f"This model's maximum context length is {info.context_tokens} tokens. However, "
            f"your prompt has {prompt_tokens} tokens, leaving no room for a completion.",
            param=param,
            code="context_length_exceeded",
        )
    if sampling.max_tokens is None:
        max_tokens = min(max_tokens_default or room, room)
    elif sampling.max_tokens > room:
        raise RequestError(
            f"This model's maximum context length is {info.context_tokens} tokens. However, "
            f"you requested {prompt_tokens + sampling.max_tokens} tokens ({prompt_tokens} in "
            f"the prompt, {sampling.max_tokens} in the completion).",
            param="max_tokens",
            code="context_length_exceeded",
        )
    else:
        max_tokens = sampling.max_tokens
    return SamplingParams(
        max_new_tokens=max_tokens,
        temperature=sampling.temperature,
        top_k=sampling.top_k,
        top_p=sampling.top_p,
        seed=sampling.seed if sampling.seed is not None else secrets.randbits(SEED_BITS),
        stop_token_ids=tokenizer.eos_token_ids,
    )


async def generate_text(
    generator: TextGenerator,
    info: ModelInfo,
    tokenizer: Tokenizer,
    prompt_ids: Sequence[int],
    params: SamplingParams,
    stops: Sequence[str],
) -> AsyncIterator[Piece]:
    """Text pieces of a generation, cut at the first stop string."""
    decoder = tokenizer.incremental_decoder()
    matcher = StopMatcher(stops)
    eos = set(tokenizer.eos_token_ids)
    count = 0
    tokens = generator.generate(info.model_id, prompt_ids, params)
    async with contextlib.aclosing(tokens):  # type: ignore[type-var]
        async for token in tokens:
            count += 1
            finish = token.finish_reason
            text = "" if token.token_id in eos else decoder.push(token.token_id)
            if finish is not None:
                text += decoder.flush()
            text = matcher.feed(text)
            if matcher.stopped:
                yield Piece(text=text, finish_reason=FINISH_STOP, completion_tokens=count)
                return
            if finish is not None:
                text += matcher.flush()
                yield Piece(text=text, finish_reason=finish, completion_tokens=count)
                return
            if text:
                yield Piece(text=text, finish_reason=None, completion_tokens=count)
    tail = matcher.feed(decoder.flush()) + matcher.flush()
    yield Piece(text=tail, finish_reason=FINISH_LENGTH, completion_tokens=count)


async def collect(pieces: AsyncIterator[Piece]) -> tuple[str, Piece]:
    texts: list[str] = []
    last = Piece(text="", finish_reason=FINISH_LENGTH, completion_tokens=0)
    async for piece in pieces:
        texts.append(piece.text)
        last = piece
    return "".join(texts), last
