"""Stages: reading only their own tensors, splitting, chunked prefill, the KV cache."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.runtime.kit import tiny_config, write_checkpoint
from vramancer_node.runtime import (
    KVCacheFullError,
    SamplingParams,
    Stage,
    generate,
    load_stage,
)
from vramancer_node.runtime import checkpoint as checkpoint_module

PROMPT = [5, 9, 1, 33, 70, 12, 8, 41, 2, 90, 17, 23, 60]
LAYERS = 4


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("llama"), tiny_config(), shards=3)


def whole(directory: Path, **kwargs: Any) -> Stage:
    return load_stage(directory, 0, LAYERS, has_embedding=True, has_head=True, **kwargs)


def split(directory: Path, bounds: list[int]) -> list[Stage]:
    return [
        load_stage(directory, first, last, has_embedding=first == 0, has_head=last == LAYERS)
        for first, last in itertools.pairwise(bounds)
    ]


class _SpyFile:
    def __init__(self, inner: Any, read: list[str]) -> None:
        self._inner = inner
        self._read = read

    def __enter__(self) -> _SpyFile:
        self._inner.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.__exit__(*exc)

    def keys(self) -> list[str]:
        return list(self._inner.keys())

    def get_slice(self, key: str) -> Any:
        return self._inner.get_slice(key)

    def get_tensor(self, key: str) -> torch.Tensor:
        self._read.append(key)
        return self._inner.get_tensor(key)  # type: ignore[no-any-return]


def test_stage_reads_only_its_layers(llama_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[str] = []
    real_safe_open = checkpoint_module.safe_open  # type: ignore[attr-defined]
    monkeypatch.setattr(
        checkpoint_module, "safe_open", lambda *a, **k: _SpyFile(real_safe_open(*a, **k), read)
    )
    stage = load_stage(llama_dir, 2, 4, has_embedding=False, has_head=False)
    assert len(read) == len(set(read)) == 2 * 9
    assert {key.split(".")[2] for key in read} == {"2", "3"}
    assert all(key.startswith("model.layers.") for key in read)
    assert len(stage.layers) == 2


@pytest.mark.parametrize("bounds", [[0, 2, 4], [0, 1, 3, 4], [0, 3, 4]])
def test_split_stages_give_the_same_tokens(llama_dir: Path, bounds: list[int]) -> None:
    for sampling in (
        SamplingParams(max_new_tokens=12),
        SamplingParams(max_new_tokens=12, temperature=0.9, top_k=20, top_p=0.9, seed=7),
    ):
        expected = generate([whole(llama_dir)], PROMPT, sampling)
        assert generate(split(llama_dir, bounds), PROMPT, sampling) == expected
    assert len(set(expected)) > 1


@pytest.mark.parametrize("chunk", [1, 3, 5, 100])
def test_chunked_prefill_equals_prefill_at_once(llama_dir: Path, chunk: int) -> None:
    stage = whole(llama_dir)
    ids = torch.tensor([PROMPT])
    with torch.no_grad():
        at_once = stage(ids, torch.arange(len(PROMPT)), stage.new_kv_cache())
        cache = stage.new_kv_cache()
        pieces = [
            stage(
                ids[:, start : start + chunk],
                torch.arange(start, min(start + chunk, ids.shape[1])),
                cache,
            )
            for start in range(0, len(PROMPT), chunk)
        ]
    torch.testing.assert_close(torch.cat(pieces, dim=1), at_once, atol=1e-5, rtol=0)
    sampling = SamplingParams(max_new_tokens=10)
    assert generate([stage], PROMPT, sampling, prefill_chunk_tokens=chunk) == generate(
        [stage], PROMPT, sampling
    )


def test_resent_positions_overwrite_the_cache(llama_dir: Path) -> None:
    stage = whole(llama_dir)
    ids = torch.tensor([PROMPT])
    cache = stage.new_kv_cache()
    with torch.no_grad():
        first = stage(ids, torch.arange(len(PROMPT)), cache)
        stage(torch.tensor([[4, 4, 4]]), torch.arange(4, 7), cache)  # a branch we abandon
        again = stage(ids[:, 4:], torch.arange(4, len(PROMPT)), cache)
    assert cache.length == len(PROMPT)
    torch.testing.assert_close(again, first[:, 4:], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="start"):
        stage(ids[:, :1], torch.tensor([len(PROMPT) + 1]), cache)


def test_kv_cache_grows_and_is_bounded(llama_dir: Path) -> None:
    stage = whole(llama_dir)
    cache = stage.new_kv_cache(max_tokens=300)
    assert cache.capacity_tokens == 256
    ids = torch.randint(0, 96, (1, 300), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        at_once = stage(ids, torch.arange(300), stage.new_kv_cache(max_tokens=300))
        stage(ids[:, :250], torch.arange(250), cache)
        rest = stage(ids[:, 250:], torch.arange(250, 300), cache)
        assert cache.capacity_tokens == 300
        torch.testing.assert_close(rest, at_once[:, 250:], atol=1e-4, rtol=0)
        with pytest.raises(KVCacheFullError):
            stage(ids[:, :1], torch.tensor([300]), cache)


def test_reduced_precision_loads_and_runs(llama_dir: Path) -> None:
    for dtype, name in ((torch.bfloat16, "bf16"), (torch.float16, "fp16")):
        stage = whole(llama_dir, dtype=name)
        assert all(p.dtype == dtype for p in stage.parameters())
        tokens = generate([stage], PROMPT, SamplingParams(max_new_tokens=4))
        assert len(tokens) == 4


def test_tied_head_without_embedding_reads_the_embedding(tmp_path: Path) -> None:
    directory = write_checkpoint(tmp_path, tiny_config("qwen2", tie_word_embeddings=True))
    stages = split(directory, [0, 2, 4])
    assert stages[1].lm_head is not None
    torch.testing.assert_close(stages[1].lm_head.weight, stages[0].embed_tokens.weight)  # type: ignore[union-attr]
    generate(stages, PROMPT, SamplingParams(max_new_tokens=3))


def test_bad_stage_inputs_are_value_errors(llama_dir: Path) -> None:
    stage = whole(llama_dir)
    cache = stage.new_kv_cache()
    with pytest.raises(ValueError, match="token id"):
        stage(torch.tensor([[96]]), torch.tensor([0]), cache)
    with pytest.raises(ValueError, match="consecutive"):
        stage(torch.tensor([[1, 2]]), torch.tensor([0, 2]), cache)
    middle = load_stage(llama_dir, 1, 2, has_embedding=False, has_head=False)
    with pytest.raises(ValueError, match="hidden states"):
        middle(torch.zeros(1, 2, 31), torch.arange(2), middle.new_kv_cache())
    with pytest.raises(ValueError, match="follow"):
        stages = split(llama_dir, [0, 1, 3, 4])
        generate([stages[0], stages[2]], PROMPT, SamplingParams())


def test_generation_stops_at_a_stop_token_and_at_max_tokens(llama_dir: Path) -> None:
    stage = whole(llama_dir)
    tokens = generate([stage], PROMPT, SamplingParams(max_new_tokens=12))
    assert len(tokens) == 12
    stop_at = tokens[5]
    first = tokens.index(stop_at)
    stopped = generate(
        [stage], PROMPT, SamplingParams(max_new_tokens=12, stop_token_ids=(stop_at,))
    )
    assert stopped == tokens[: first + 1]
