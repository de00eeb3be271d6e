"""ModelProfile from real config.json contents: parameter counts, bytes, KV cache, FLOPs."""

from __future__ import annotations

from typing import Any

import pytest

from protocol.placement import ModelProfile, ProfileError
from tests.placement.helpers import (
    MISTRAL_7B_CONFIG,
    MISTRAL_7B_PARAMETERS,
    QWEN2_05B_CONFIG,
    QWEN2_05B_PARAMETERS,
    TINYLLAMA_CONFIG,
    TINYLLAMA_PARAMETERS,
    tiny_config,
)


@pytest.mark.parametrize(
    ("config", "published", "exact"),
    [
        (TINYLLAMA_CONFIG, 1.1e9, TINYLLAMA_PARAMETERS),
        (QWEN2_05B_CONFIG, 0.49e9, QWEN2_05B_PARAMETERS),
        (MISTRAL_7B_CONFIG, 7.24e9, MISTRAL_7B_PARAMETERS),
    ],
    ids=["tinyllama-1.1b", "qwen2-0.5b", "mistral-7b"],
)
def test_parameter_counts_match_the_published_totals(
    config: dict[str, Any], published: float, exact: int
) -> None:
    profile = ModelProfile.from_hf_config(config, "bfloat16")
    assert profile.parameter_count == pytest.approx(published, rel=0.01)
    # The exact count the checkpoints report (sum of tensor sizes).
    assert profile.parameter_count == exact
    assert profile.weight_bytes == 2 * exact


def test_tinyllama_numbers() -> None:
    profile = ModelProfile.from_hf_config(TINYLLAMA_CONFIG, "float16")
    assert (profile.num_kv_heads, profile.head_dim) == (4, 64)
    assert profile.layer_param_count == 44_044_288
    assert profile.layer_weight_bytes == 2 * 44_044_288
    assert profile.embedding_bytes == 2 * 32000 * 2048
    assert profile.head_bytes == 2 * (2048 + 32000 * 2048)
    assert profile.kv_bytes_per_token_per_layer == 2 * 4 * 64 * 2
    assert profile.activation_bytes_per_token == 2048 * 2
    assert profile.layer_bytes(1000) == profile.layer_weight_bytes + 1000 * 1024
    attention = 4 * 32 * 64 * 1000
    assert profile.layer_flops_per_token(1000) == 2 * 44_044_288 + attention
    assert profile.head_flops_per_token == 2 * (2048 + 32000 * 2048)
    assert profile.rope_theta == 10000.0
    assert profile.max_position_embeddings == 2048


def test_qwen2_has_qkv_biases_and_a_tied_head() -> None:
    profile = ModelProfile.from_hf_config(QWEN2_05B_CONFIG, "bfloat16")
    assert profile.qkv_bias and not profile.o_bias and profile.tie_word_embeddings
    as_llama = ModelProfile.from_hf_config(QWEN2_05B_CONFIG | {"model_type": "llama"}, "bfloat16")
    assert not as_llama.qkv_bias
    assert profile.parameter_count - as_llama.parameter_count == 24 * (896 + 2 * 128)
    assert profile.head_bytes == 2 * 896  # final norm only: lm_head is the embedding


def test_tied_embedding_is_held_twice_only_when_split() -> None:
    profile = ModelProfile.from_hf_config(QWEN2_05B_CONFIG, "bfloat16")
    embedding, norm = profile.embedding_bytes, 2 * 896
    assert profile.fixed_bytes(first=True, last=True) == embedding + norm
    assert profile.fixed_bytes(first=True, last=False) == embedding
    assert profile.fixed_bytes(first=False, last=True) == embedding + norm
    assert profile.fixed_bytes(first=False, last=False) == 0
    untied = ModelProfile.from_hf_config(TINYLLAMA_CONFIG, "bfloat16")
    assert untied.fixed_bytes(first=False, last=True) == untied.head_bytes


def test_current_transformers_form_reads_like_the_older_one() -> None:
    current = {k: v for k, v in TINYLLAMA_CONFIG.items() if k not in ("torch_dtype", "rope_theta")}
    current |= {
        "dtype": "bfloat16",
        "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
        "head_dim": 64,
    }
    older = ModelProfile.from_hf_config(TINYLLAMA_CONFIG, "auto")
    assert ModelProfile.from_hf_config(current, "auto") == older
    assert older.dtype == "bfloat16"


def test_dtype_argument_and_aliases() -> None:
    assert ModelProfile.from_hf_config(TINYLLAMA_CONFIG, "float32").dtype_bytes == 4
    assert ModelProfile.from_hf_config(TINYLLAMA_CONFIG, "torch.float16").dtype == "float16"
    assert ModelProfile.from_hf_config(TINYLLAMA_CONFIG, "bf16").dtype == "bfloat16"
    # "dtype" (current) wins over "torch_dtype" (older) when both are present.
    both = TINYLLAMA_CONFIG | {"dtype": "float32"}
    assert ModelProfile.from_hf_config(both, "auto").dtype == "float32"


def test_explicit_head_dim_decouples_attention_width_from_hidden_size() -> None:
    # Mistral-Nemo shape: 32 heads of 128 in a 5120-wide model.
    config = MISTRAL_7B_CONFIG | {"hidden_size": 5120, "head_dim": 128, "num_hidden_layers": 40}
    profile = ModelProfile.from_hf_config(config, "bfloat16")
    q_dim, kv_dim = 32 * 128, 8 * 128
    attention = 5120 * q_dim * 2 + 2 * 5120 * kv_dim
    assert profile.layer_param_count == attention + 3 * 5120 * 14336 + 2 * 5120
    assert profile.kv_bytes_per_token_per_layer == 2 * 8 * 128 * 2


def test_missing_kv_heads_means_multi_head_attention() -> None:
    config = {k: v for k, v in TINYLLAMA_CONFIG.items() if k != "num_key_value_heads"}
    assert ModelProfile.from_hf_config(config, "float16").num_kv_heads == 32


def test_llama_attention_and_mlp_bias_flags() -> None:
    base = ModelProfile.from_hf_config(tiny_config(), "float16").layer_param_count
    with_attention = tiny_config() | {"attention_bias": True}
    biased = ModelProfile.from_hf_config(with_attention, "float16")
    assert biased.layer_param_count - base == 64 + 2 * 32 + 64  # q, k, v and o biases
    with_mlp = tiny_config() | {"mlp_bias": True}
    mlp = ModelProfile.from_hf_config(with_mlp, "float16").layer_param_count
    assert mlp - base == 2 * 128 + 64
    # Mistral never has biases, whatever the flag says.
    mistral = tiny_config() | {"model_type": "mistral", "attention_bias": True}
    assert ModelProfile.from_hf_config(mistral, "float16").layer_param_count == base


def test_every_missing_key_is_named_at_once() -> None:
    with pytest.raises(ProfileError) as caught:
        ModelProfile.from_hf_config({"model_type": "llama"}, "float16")
    message = str(caught.value)
    for key in (
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "vocab_size",
    ):
        assert f"{key} is missing" in message


@pytest.mark.parametrize(
    ("change", "dtype", "fragment"),
    [
        ({"hidden_size": 0}, "float16", "hidden_size must be an int"),
        ({"num_hidden_layers": True}, "float16", "num_hidden_layers must be an int"),
        ({"vocab_size": "32000"}, "float16", "vocab_size must be an int"),
        ({"num_key_value_heads": 3}, "float16", "not a multiple of num_key_value_heads"),
        ({"num_attention_heads": 6}, "float16", "hidden_size (64) is not a multiple"),
        ({"model_type": "gpt2"}, "float16", "model_type 'gpt2' is not one of"),
        ({"model_type": None}, "float16", "model_type is missing"),
        ({"tie_word_embeddings": "yes"}, "float16", "tie_word_embeddings must be true or false"),
        ({"rope_theta": -1.0}, "float16", "rope_theta must be a positive number"),
        ({"rope_parameters": {"rope_theta": "x"}}, "float16", "rope_parameters.rope_theta"),
        ({}, "int4", "dtype argument 'int4' is not one of"),
        ({}, "auto", "dtype 'auto' needs the config key dtype or torch_dtype"),
        ({"torch_dtype": "float8"}, "auto", "torch_dtype 'float8' is not one of"),
    ],
)
def test_invalid_configs_name_the_key(change: dict[str, Any], dtype: str, fragment: str) -> None:
    with pytest.raises(ProfileError, match="cannot be profiled") as caught:
        ModelProfile.from_hf_config(tiny_config() | change, dtype)
    assert fragment in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_a_non_object_config_is_refused() -> None:
    with pytest.raises(ProfileError, match="JSON object"):
        ModelProfile.from_hf_config([1, 2], "float16")  # type: ignore[arg-type]
