"""Token choice: greedy, temperature, top-k, top-p, seeds and limits."""

from __future__ import annotations

import pytest
import torch

from vramancer_node.runtime import Sampler, SamplingParams

SEED = 99


def logits() -> torch.Tensor:
    return torch.randn(1, 50, generator=torch.Generator().manual_seed(SEED)) * 3


def draws(params: SamplingParams, count: int = 200) -> list[int]:
    sampler = Sampler(params)
    row = logits()
    return [int(sampler.sample(row)[0]) for _ in range(count)]


def test_greedy_is_argmax() -> None:
    assert draws(SamplingParams(), 3) == [int(logits().argmax())] * 3


def test_top_k_one_and_tiny_top_p_are_greedy() -> None:
    best = int(logits().argmax())
    assert set(draws(SamplingParams(temperature=1.5, top_k=1))) == {best}
    assert set(draws(SamplingParams(temperature=1.5, top_p=1e-6))) == {best}


def test_top_k_limits_the_support() -> None:
    allowed = set(torch.topk(logits()[0], 5).indices.tolist())
    seen = set(draws(SamplingParams(temperature=5.0, top_k=5), 500))
    assert seen == allowed, f"seed={SEED}"


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    probs = torch.softmax(logits()[0], dim=-1)
    order = torch.argsort(probs, descending=True)
    mass = torch.cumsum(probs[order], dim=0)
    needed = int((mass < 0.8).sum()) + 1
    seen = set(draws(SamplingParams(temperature=1.0, top_p=0.8), 2000))
    assert seen <= set(order[:needed].tolist())
    assert len(seen) > 1, f"seed={SEED}"


def test_same_seed_same_tokens_other_seed_other_tokens() -> None:
    params = SamplingParams(temperature=1.0, seed=3)
    assert draws(params) == draws(params)
    assert draws(params) != draws(SamplingParams(temperature=1.0, seed=4))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_new_tokens": 0},
        {"temperature": -1.0},
        {"temperature": float("nan")},
        {"top_k": -1},
        {"top_p": 0.0},
        {"top_p": 1.5},
    ],
)
def test_invalid_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SamplingParams(**kwargs)  # type: ignore[arg-type]
