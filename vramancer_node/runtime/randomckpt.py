"""A small random-weight Llama-family checkpoint, written on the spot.

``vramancer-node demo`` (and the tests) need a real checkpoint directory without
downloading one: ``write_random_checkpoint`` writes ``config.json`` and seeded random
weights as ``model.safetensors``, in the exact layout Hugging Face uses, so every
loader path is the real one.

Weights are drawn from N(0, ``WEIGHT_STD``\\ :sup:`2`).  Hugging Face's default
initialisation (std 0.02) gives a random model near-uniform logits, and greedy decoding
then repeats one token forever: a test comparing two runs could not fail.  With std
0.5 the logits are peaked and vary from step to step, so greedy token ids differ along
the sequence and any wrong layer, position or cache entry changes them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

WEIGHT_STD = 0.5
"""Large enough that greedy tokens vary from step to step on a random model."""
DEMO_CONFIG: dict[str, Any] = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "vocab_size": 512,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 6,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "max_position_embeddings": 1024,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
}
"""The demo's model: 6 layers, GQA, small enough to load in a blink on any CPU."""


def checkpoint_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every tensor of the checkpoint ``config`` describes, with its shape."""
    hidden, inner = config["hidden_size"], config["intermediate_size"]
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    kv = (config.get("num_key_value_heads") or heads) * head_dim
    bias = config["model_type"] == "qwen2" or config.get("attention_bias", False)
    shapes: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (config["vocab_size"], hidden),
        "model.norm.weight": (hidden,),
    }
    if not config.get("tie_word_embeddings"):
        shapes["lm_head.weight"] = (config["vocab_size"], hidden)
    for layer in range(config["num_hidden_layers"]):
        prefix = f"model.layers.{layer}."
        projections = {
            "self_attn.q_proj": (heads * head_dim, hidden),
            "self_attn.k_proj": (kv, hidden),
            "self_attn.v_proj": (kv, hidden),
            "self_attn.o_proj": (hidden, heads * head_dim),
            "mlp.gate_proj": (inner, hidden),
            "mlp.up_proj": (inner, hidden),
            "mlp.down_proj": (hidden, inner),
        }
        for name, shape in projections.items():
            shapes[f"{prefix}{name}.weight"] = shape
            if bias and name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                shapes[f"{prefix}{name}.bias"] = (shape[0],)
        shapes[f"{prefix}input_layernorm.weight"] = (hidden,)
        shapes[f"{prefix}post_attention_layernorm.weight"] = (hidden,)
    return shapes


def write_random_checkpoint(
    directory: Path, config: dict[str, Any] | None = None, *, seed: int = 0
) -> Path:
    """Write ``config.json`` and seeded random weights (``model.safetensors``) into
    ``directory`` (created if needed); ``config`` defaults to :data:`DEMO_CONFIG`."""
    config = dict(DEMO_CONFIG if config is None else config)
    directory.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    tensors = {
        key: torch.randn(shape, generator=generator) * WEIGHT_STD
        for key, shape in checkpoint_shapes(config).items()
    }
    save_file(tensors, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return directory
