"""Tiny Llama-family checkpoints written by the tests themselves (no transformers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from vramancer_node.runtime.randomckpt import checkpoint_shapes

WEIGHT_STD = 0.5
"""Large enough that greedy tokens vary from step to step on a random model."""


def tiny_config(model_type: str = "llama", **overrides: Any) -> dict[str, Any]:
    """config.json contents for a 4-layer model with grouped-query attention."""
    config: dict[str, Any] = {
        "model_type": model_type,
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": 96,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
    }
    config.update(overrides)
    return config


def write_checkpoint(
    directory: Path, config: dict[str, Any], *, seed: int = 0, shards: int = 1
) -> Path:
    """Write config.json and seeded random weights, in ``shards`` files (with an index
    when more than one)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    generator = torch.Generator().manual_seed(seed)
    tensors = {
        key: torch.randn(shape, generator=generator) * WEIGHT_STD
        for key, shape in checkpoint_shapes(config).items()
    }
    if shards == 1:
        save_file(tensors, str(directory / "model.safetensors"))
        return directory
    keys = sorted(tensors)
    weight_map: dict[str, str] = {}
    for shard in range(shards):
        name = f"model-{shard + 1:05d}-of-{shards:05d}.safetensors"
        part = {key: tensors[key] for key in keys[shard::shards]}
        save_file(part, str(directory / name))
        weight_map.update(dict.fromkeys(part, name))
    index = {"metadata": {}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    return directory
