"""Choosing the next token from logits.

``SamplingParams`` is what a request asks for; ``Sampler`` applies it, in the order
transformers uses: temperature, then top-k, then top-p (nucleus). ``temperature == 0``
is greedy (argmax; ties go to the lowest id, as in transformers).

Sampling runs on the CPU in float32 from a ``torch.Generator`` seeded with ``seed``:
the same request gives the same tokens whatever device computed the logits, and
whichever node of the pipeline holds the head. One vocabulary row per token is a
negligible copy next to a forward pass.

Stop *strings* are the caller's business: they need the tokenizer and can span token
boundaries, so the caller detokenizes incrementally and stops (and trims) itself. This
module knows ``stop_token_ids`` (e.g. EOS) and ``max_new_tokens`` only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

MAX_NEW_TOKENS_MAX = 1 << 20
"""No model in this family has a context window of a million positions."""


@dataclass(frozen=True, kw_only=True)
class SamplingParams:
    """How to choose tokens, and when to stop."""

    max_new_tokens: int = 256
    """Generate at most this many tokens (a stop token counts, and is returned)."""
    temperature: float = 0.0
    """0: greedy. Otherwise logits are divided by it before softmax."""
    top_k: int = 0
    """Keep the k most likely tokens; 0: no limit."""
    top_p: float = 1.0
    """Keep the smallest set of most likely tokens whose mass reaches top_p; 1: all."""
    seed: int = 0
    """Seed of the generator. Pass a fresh random one for varied answers."""
    stop_token_ids: tuple[int, ...] = ()
    """Stop after generating any of these (EOS and friends)."""

    def __post_init__(self) -> None:
        if not 0 < self.max_new_tokens <= MAX_NEW_TOKENS_MAX:
            raise ValueError(
                f"max_new_tokens={self.max_new_tokens} not in [1, {MAX_NEW_TOKENS_MAX}]"
            )
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"temperature={self.temperature} must be finite and >= 0")
        if self.top_k < 0:
            raise ValueError(f"top_k={self.top_k} must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p={self.top_p} not in (0, 1]")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


class Sampler:
    """Draws tokens for one session; its generator state advances with each draw."""

    def __init__(self, params: SamplingParams) -> None:
        self.params = params
        self._generator = torch.Generator(device="cpu")
        self._generator.manual_seed(params.seed)

    def sample(self, logits: torch.Tensor) -> torch.Tensor:
        """One token id per row of ``logits`` ``[B, vocab]`` (int64, CPU, shape ``[B]``)."""
        scores = logits.detach().to(device="cpu", dtype=torch.float32)
        if self.params.greedy:
            return scores.argmax(dim=-1)
        scores = scores / self.params.temperature
        if self.params.top_k:
            scores = _keep_top_k(scores, self.params.top_k)
        if self.params.top_p < 1:
            scores = _keep_top_p(scores, self.params.top_p)
        probs = torch.softmax(scores, dim=-1)
        return torch.multinomial(probs, 1, generator=self._generator).squeeze(-1)


def _keep_top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    k = min(k, scores.shape[-1])
    threshold = torch.topk(scores, k, dim=-1).values[..., -1:]
    return scores.masked_fill(scores < threshold, -math.inf)


def _keep_top_p(scores: torch.Tensor, p: float) -> torch.Tensor:
    sorted_scores, order = torch.sort(scores, dim=-1, descending=True)
    probs = torch.softmax(sorted_scores, dim=-1)
    # Drop a token when the tokens ranked above it already reach p; the most likely
    # token is therefore always kept.
    mass_before = torch.cumsum(probs, dim=-1) - probs
    drop_sorted = mass_before >= p
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return scores.masked_fill(drop, -math.inf)
