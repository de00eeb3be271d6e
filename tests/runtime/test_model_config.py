"""config.json as written by older and current transformers releases."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tests.runtime.kit import tiny_config, write_checkpoint
from vramancer_node.runtime import SamplingParams, generate, load_stage, read_model_config

PROMPT = [7, 3, 50, 21, 9, 88]


def test_rope_parameters_map_equals_top_level_rope_theta(tmp_path: Path) -> None:
    old = write_checkpoint(
        tmp_path / "old",
        tiny_config(rope_theta=500000.0, rope_scaling={"type": "linear", "factor": 4.0}),
    )
    new_config = tiny_config(
        rope_parameters={"rope_theta": 500000.0, "rope_type": "linear", "factor": 4.0},
        dtype="bfloat16",
    )
    del new_config["rope_theta"], new_config["torch_dtype"]
    new = write_checkpoint(tmp_path / "new", new_config)

    old_config, current = read_model_config(old), read_model_config(new)
    assert current.rope == old_config.rope
    assert current.rope.theta == 500000.0 and current.rope.rope_type == "linear"
    assert (old_config.checkpoint_dtype, current.checkpoint_dtype) == ("float32", "bfloat16")

    def tokens(directory: Path) -> list[int]:
        stage = load_stage(directory, 0, 4, has_embedding=True, has_head=True)
        return generate([stage], PROMPT, SamplingParams(max_new_tokens=6))

    assert tokens(old) == tokens(new)


def test_defaults_when_keys_are_absent(tmp_path: Path) -> None:
    config = tiny_config(head_dim=None)
    for key in ("rope_theta", "num_key_value_heads", "tie_word_embeddings", "torch_dtype"):
        del config[key]
    (tmp_path / "config.json").write_text(json.dumps(config))
    read = read_model_config(tmp_path)
    assert read.head_dim == 8
    assert read.num_key_value_heads == read.num_attention_heads == 4
    assert read.rope.theta == 10000.0 and read.rope.rope_type == "default"
    assert not read.tie_word_embeddings and read.checkpoint_dtype is None


def test_explicit_head_dim_differing_from_hidden_over_heads(tmp_path: Path) -> None:
    directory = write_checkpoint(tmp_path, tiny_config(head_dim=16))
    stage = load_stage(directory, 0, 4, has_embedding=True, has_head=True)
    assert stage.state_dict()["layers.0.self_attn.q_proj.weight"].shape == torch.Size([64, 32])
    generate([stage], PROMPT, SamplingParams(max_new_tokens=2))


def test_qwen2_sliding_window_only_when_enabled(tmp_path: Path) -> None:
    base = tiny_config("qwen2", sliding_window=4096, max_window_layers=2)
    (tmp_path / "config.json").write_text(json.dumps(base))
    assert read_model_config(tmp_path).sliding_windows == (None,) * 4
    (tmp_path / "config.json").write_text(json.dumps({**base, "use_sliding_window": True}))
    assert read_model_config(tmp_path).sliding_windows == (None, None, 4096, 4096)
    config = tiny_config("mistral", sliding_window=4096)
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert read_model_config(tmp_path).sliding_windows == (4096,) * 4
