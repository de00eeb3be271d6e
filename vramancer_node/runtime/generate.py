"""Single-process generation over a list of stages: the reference the network pipeline
must reproduce token for token.

Prefill feeds the prompt in chunks of ``prefill_chunk_tokens`` (bounding activation
memory at ``chunk x hidden`` rather than ``prompt x hidden``, and the attention scores
at ``chunk x prompt``); each stage's KV cache then holds the whole prompt. Decode feeds
one token at a time: each step costs one token through every layer plus attention over
the cached positions, so a sequence of n tokens costs O(n) per step, not O(n^2).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vramancer_node.runtime.kv_cache import KVCache
from vramancer_node.runtime.sampler import Sampler, SamplingParams
from vramancer_node.runtime.stage import Stage

DEFAULT_PREFILL_CHUNK_TOKENS = 512


def check_pipeline(stages: Sequence[Stage]) -> None:
    """The stages cover every layer once, in order, first embedding and last head."""
    if not stages:
        raise ValueError("no stages")
    config = stages[0].config
    if not stages[0].has_embedding or not stages[-1].has_head:
        raise ValueError("the first stage must have the embedding and the last the head")
    expected_first = 0
    for stage in stages:
        if stage.config != config or stage.first_layer != expected_first:
            raise ValueError(
                f"stage [{stage.first_layer}, {stage.last_layer_exclusive}) does not follow "
                f"layer {expected_first} of the same model"
            )
        expected_first = stage.last_layer_exclusive
    if expected_first != config.num_hidden_layers:
        raise ValueError(f"stages end at layer {expected_first} of {config.num_hidden_layers}")


def run_pipeline(
    stages: Sequence[Stage],
    token_ids: torch.Tensor,
    positions: torch.Tensor,
    caches: Sequence[KVCache],
    *,
    last_only: bool,
) -> torch.Tensor:
    """Feed ``token_ids`` ``[B, T]`` at ``positions`` through every stage; logits out."""
    x = token_ids
    for stage, cache in zip(stages, caches, strict=True):
        x = stage(x, positions, cache, last_only=last_only)
    return x


def generate(
    stages: Sequence[Stage],
    prompt_token_ids: Sequence[int],
    sampling: SamplingParams,
    *,
    prefill_chunk_tokens: int = DEFAULT_PREFILL_CHUNK_TOKENS,
) -> list[int]:
    """Generate up to ``sampling.max_new_tokens`` tokens after the prompt and return
    them (the prompt excluded; a stop token that ended generation included)."""
    check_pipeline(stages)
    if not prompt_token_ids:
        raise ValueError("empty prompt")
    if prefill_chunk_tokens <= 0:
        raise ValueError(f"prefill_chunk_tokens={prefill_chunk_tokens} must be > 0")
    total = len(prompt_token_ids) + sampling.max_new_tokens
    # The last sampled token is returned, never fed back: the cache needs total - 1.
    caches = [stage.new_kv_cache(max_tokens=total - 1) for stage in stages]
    sampler = Sampler(sampling)
    stop = set(sampling.stop_token_ids)
    prompt = torch.tensor([list(prompt_token_ids)], dtype=torch.int64)
    with torch.inference_mode():
        logits = torch.empty(0)
        for start in range(0, prompt.shape[1], prefill_chunk_tokens):
            chunk = prompt[:, start : start + prefill_chunk_tokens]
            positions = torch.arange(start, start + chunk.shape[1])
            logits = run_pipeline(stages, chunk, positions, caches, last_only=True)
        generated: list[int] = []
        position = prompt.shape[1]
        while True:
            token = int(sampler.sample(logits[:, -1])[0])
            generated.append(token)
            if token in stop or len(generated) == sampling.max_new_tokens:
                return generated
            logits = run_pipeline(
                stages,
                torch.tensor([[token]]),
                torch.tensor([position]),
                caches,
                last_only=True,
            )
            position += 1
