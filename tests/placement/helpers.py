"""Shared pieces of the placement tests: real configs and an independent reference.

The reference re-derives memory and cost from the profile's public numbers and
``Links.transfer_s`` without touching ``protocol.placement.cost``, and enumerates every
order of every subset of devices with every contiguous split of the layers.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

from protocol.placement import ModelProfile, NodeResources, Placement, PlacementRequest

# config.json of TinyLlama/TinyLlama-1.1B-Chat-v1.0 (older transformers form).
TINYLLAMA_CONFIG: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "hidden_act": "silu",
    "hidden_size": 2048,
    "initializer_range": 0.02,
    "intermediate_size": 5632,
    "max_position_embeddings": 2048,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 22,
    "num_key_value_heads": 4,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": None,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.35.0",
    "use_cache": True,
    "vocab_size": 32000,
}
TINYLLAMA_PARAMETERS = 1_100_048_384

# config.json of Qwen/Qwen2-0.5B.
QWEN2_05B_CONFIG: dict[str, Any] = {
    "architectures": ["Qwen2ForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151643,
    "hidden_act": "silu",
    "hidden_size": 896,
    "initializer_range": 0.02,
    "intermediate_size": 4864,
    "max_position_embeddings": 131072,
    "max_window_layers": 24,
    "model_type": "qwen2",
    "num_attention_heads": 14,
    "num_hidden_layers": 24,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 131072,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.40.1",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
}
QWEN2_05B_PARAMETERS = 494_032_768

# config.json of mistralai/Mistral-7B-v0.1.
MISTRAL_7B_CONFIG: dict[str, Any] = {
    "architectures": ["MistralForCausalLM"],
    "bos_token_id": 1,
    "eos_token_id": 2,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 14336,
    "max_position_embeddings": 32768,
    "model_type": "mistral",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "sliding_window": 4096,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.34.0.dev0",
    "use_cache": True,
    "vocab_size": 32000,
}
MISTRAL_7B_PARAMETERS = 7_241_732_096


def tiny_config(layers: int = 4, *, tie: bool = False) -> dict[str, Any]:
    """A small Llama-shaped config: one layer is ~72 KiB in float16, the embedding ~1.7 layers."""
    return {
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 1000,
        "tie_word_embeddings": tie,
    }


def tiny_profile(layers: int = 4, *, tie: bool = False) -> ModelProfile:
    return ModelProfile.from_hf_config(tiny_config(layers, tie=tie), "float16")


def usable_bytes(free_bytes: int, headroom_fraction: float) -> int:
    return math.floor(free_bytes * (1.0 - headroom_fraction))


def stage_bytes(
    profile: ModelProfile, layers: int, context: int, *, first: bool, last: bool
) -> int:
    """Memory of a stage, from the profile's public per-part sizes."""
    size = layers * (profile.layer_weight_bytes + context * profile.kv_bytes_per_token_per_layer)
    if first:
        size += profile.embedding_bytes
    if last:
        size += profile.head_bytes
        if profile.tie_word_embeddings and not first:
            size += profile.embedding_bytes
    return size


Device = tuple[str, int, int, float]
"""``(node_id, device_index, free_bytes, tflops)``."""


def devices_of(nodes: tuple[NodeResources, ...]) -> list[Device]:
    return [
        (node.node_id, device.device_index, device.free_bytes, device.tflops)
        for node in nodes
        for device in node.devices
    ]


def reference_cost(request: PlacementRequest, stages: list[tuple[Device, int]]) -> float:
    """Decode seconds per token of ``stages`` (device, layer count), from first principles."""
    profile, context = request.profile, request.context_tokens
    efficiency = request.compute_efficiency
    total = 0.0
    for device, count in stages:
        total += count * profile.layer_flops_per_token(context) / (device[3] * 1e12 * efficiency)
    last = stages[-1][0]
    total += profile.head_flops_per_token / (last[3] * 1e12 * efficiency)
    for (a, _), (b, _) in itertools.pairwise(stages):
        total += request.links.transfer_s(a[0], b[0], profile.activation_bytes_per_token)
    if len(stages) > 1:
        total += request.links.transfer_s(last[0], stages[0][0][0], 4)
    return total


def stages_fit(request: PlacementRequest, stages: list[tuple[Device, int]]) -> bool:
    count = len(stages)
    for position, (device, layers) in enumerate(stages):
        need = stage_bytes(
            request.profile,
            layers,
            request.context_tokens,
            first=position == 0,
            last=position == count - 1,
        )
        if need > usable_bytes(device[2], request.headroom_fraction):
            return False
    return True


def _compositions(total: int, parts: int) -> Iterator[tuple[int, ...]]:
    for cuts in itertools.combinations(range(1, total), parts - 1):
        bounds = (0, *cuts, total)
        yield tuple(b - a for a, b in itertools.pairwise(bounds))


def brute_force(request: PlacementRequest) -> float | None:
    """Least cost over all device orders and contiguous splits, or ``None`` if none fits."""
    devices = [device for device in devices_of(request.nodes) if device[3] > 0]
    layers = request.profile.num_layers
    best: float | None = None
    for count in range(1, min(len(devices), layers) + 1):
        for order in itertools.permutations(devices, count):
            for split in _compositions(layers, count):
                stages = list(zip(order, split, strict=True))
                if not stages_fit(request, stages):
                    continue
                cost = reference_cost(request, stages)
                if best is None or cost < best:
                    best = cost
    return best


def placement_stages(request: PlacementRequest, placement: Placement) -> list[tuple[Device, int]]:
    """The placement's stages as ``(device, layer count)`` pairs of the request."""
    by_key = {(d[0], d[1]): d for d in devices_of(request.nodes)}
    return [(by_key[stage.device], stage.layers) for stage in placement.stages]


def check_placement(request: PlacementRequest, placement: Placement) -> None:
    """Assert the placement covers the model and fits memory, by the reference."""
    assert placement.num_layers == request.profile.num_layers
    stages = placement_stages(request, placement)
    assert stages_fit(request, stages), f"memory exceeded: {placement}"
    for memory in placement.stage_memory:
        assert memory.total_bytes <= memory.usable_bytes
    expected = reference_cost(request, stages)
    assert math.isclose(placement.decode_s_per_token, expected, rel_tol=1e-9)
