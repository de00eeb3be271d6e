"""Our model against Hugging Face transformers on tiny random checkpoints that
transformers itself wrote (the real directory layout and config.json spellings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from vramancer_node.runtime import SamplingParams, generate, load_stage
from vramancer_node.runtime.checkpoint import INDEX_FILE_NAME

transformers = pytest.importorskip("transformers")

SEED = 1234
WEIGHT_STD = 0.5
LOGITS_ATOL = 1e-4
NEW_TOKENS = 16
PROMPT = [3, 17, 42, 5, 77, 9, 31, 64, 2, 50, 11]

COMMON: dict[str, Any] = {
    "vocab_size": 96,
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "max_position_embeddings": 256,
    "bos_token_id": None,
    "eos_token_id": None,
    "pad_token_id": None,
}

VARIANTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {"num_key_value_heads": 2}),
    "llama-bias-llama3-rope": (
        "LlamaConfig",
        "LlamaForCausalLM",
        {
            "num_key_value_heads": 4,
            "attention_bias": True,
            "rope_scaling": {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
            },
        },
    ),
    "qwen2-gqa-tied-linear-rope": (
        "Qwen2Config",
        "Qwen2ForCausalLM",
        {
            "num_key_value_heads": 1,
            "tie_word_embeddings": True,
            "rope_scaling": {"rope_type": "linear", "factor": 2.0},
        },
    ),
    "mistral-sliding-window": (
        "MistralConfig",
        "MistralForCausalLM",
        {"num_key_value_heads": 2, "sliding_window": 5},
    ),
}


def save_reference(directory: Path, variant: str, **save_kwargs: Any) -> Any:
    """Build a seeded random transformers model, save it, return it (eval, fp32)."""
    config_class, model_class, extra = VARIANTS[variant]
    config = getattr(transformers, config_class)(**COMMON, **extra)
    torch.manual_seed(SEED)
    model = getattr(transformers, model_class)(config)
    generator = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * WEIGHT_STD)
    model.eval()
    model.save_pretrained(directory, safe_serialization=True, **save_kwargs)
    return model


def reference_greedy(model: Any) -> list[int]:
    prompt = torch.tensor([PROMPT])
    with torch.no_grad():
        out = model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            do_sample=False,
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
        )
    return [int(token) for token in out[0, len(PROMPT) :]]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_logits_and_greedy_tokens_match_transformers(tmp_path: Path, variant: str) -> None:
    model = save_reference(tmp_path, variant)
    layers = model.config.num_hidden_layers
    stage = load_stage(tmp_path, 0, layers, has_embedding=True, has_head=True)
    prompt = torch.tensor([PROMPT])
    with torch.no_grad():
        expected = model(prompt).logits
        ours = stage(prompt, torch.arange(len(PROMPT)), stage.new_kv_cache())
    torch.testing.assert_close(ours, expected, atol=LOGITS_ATOL, rtol=0)

    tokens = generate([stage], PROMPT, SamplingParams(max_new_tokens=NEW_TOKENS))
    assert tokens == reference_greedy(model), f"seed={SEED}"
    assert len(set(tokens)) > 1, "greedy sequence is constant: weights too small to test"


def test_sharded_checkpoint_loads_and_matches(tmp_path: Path) -> None:
    model = save_reference(tmp_path, "llama", max_shard_size="100KB")
    assert (tmp_path / INDEX_FILE_NAME).exists()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 2
    stages = [
        load_stage(tmp_path, 0, 1, has_embedding=True, has_head=False),
        load_stage(tmp_path, 1, 4, has_embedding=False, has_head=True),
    ]
    tokens = generate(stages, PROMPT, SamplingParams(max_new_tokens=NEW_TOKENS))
    assert tokens == reference_greedy(model)
