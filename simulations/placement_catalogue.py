"""What the placement simulation draws from: devices, links and models, with sources.

Theory of operation
-------------------
Every figure below is a datasheet value (the URL is beside it) or, where no datasheet
states it, an assumption that says so and why.  Nothing here is fitted to the results.

*Devices.*  A placement cares about three numbers per device: total memory (what exo
weighs by), memory bandwidth and peak arithmetic throughput.  Decoding one token at
batch 1 reads every weight of a layer once and does about two FLOPs per weight (one
per byte in 16-bit weights), so it is memory-bound on every device here: the
simulation gives each device the *roofline* throughput
``min(peak_tflops, bandwidth x arithmetic intensity)`` scaled by
:data:`DECODE_BANDWIDTH_EFFICIENCY` (``placement_cluster.decode_tflops``).  What the
daemon publishes today, peak FP32 (``vramancer_node/devices/compute.py``), is the
``--throughput peak-fp32`` alternative.

*Memory in use.*  A device never offers all of its memory: a GPU loses its CUDA
context (and a display's framebuffer), a unified-memory board loses what the OS holds.
``in_use_bytes`` is drawn uniformly from each profile's range; on top of it another
workload holds a share of the device with :data:`BUSY_PROBABILITY`.

*Links.*  Every node hangs off one uplink (a port on a switch, or Wi-Fi to an access
point).  A pair of nodes talks through both uplinks: the RTT is the sum of the two
legs' halves of their class RTT, times a per-pair jitter, and the bandwidth is the
slower leg's.  Two nodes on the same class therefore see that class's RTT.

*Models.*  The ``config.json`` of each model, as published on the Hugging Face hub,
reduced to the keys the profile reads plus the ones that identify the checkpoint; the
parameter counts :func:`protocol.placement.ModelProfile.from_hf_config` derives from
them equal the published ones (``PARAMETERS``, checked by the tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GIB = 2**30
"""Memory sizes on GPU and board datasheets ("24 GB", "8 GB") are binary: 24 GiB."""
MIB = 2**20


@dataclass(frozen=True, kw_only=True, slots=True)
class DeviceProfile:
    """One kind of device, from its datasheet."""

    name: str
    kind: str
    """``cuda``, ``jetson`` or ``cpu`` (``protocol.membership.record.DEVICE_KINDS``)."""
    memory_total_bytes: int
    memory_bandwidth_bytes_per_s: float
    peak_tflops: float
    """Dense 16-bit (or FP32 where 16-bit is no faster) arithmetic peak, TFLOP/s."""
    peak_fp32_tflops: float | None
    """What ``vramancer_node.devices`` publishes: CUDA cores x 2 x max clock; ``None``
    for a CPU, whose probe publishes no figure."""
    in_use_bytes: tuple[int, int]
    """Memory held before the model loads (driver context, OS), uniform range."""
    uplinks: tuple[str, ...]
    """Link classes such a machine plausibly has (keys of :data:`LINK_CLASSES`)."""


DEVICE_PROFILES: tuple[DeviceProfile, ...] = (
    # NVIDIA GeForce RTX 4090: 24 GB GDDR6X, 1008 GB/s, 16384 CUDA cores at 2.52 GHz boost
    # = 82.6 TFLOPS FP32 (FP16 non-tensor runs at the same rate).
    # https://www.nvidia.com/en-us/geforce/graphics-cards/40-series/rtx-4090/
    # https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf
    DeviceProfile(
        name="RTX 4090",
        kind="cuda",
        memory_total_bytes=24 * GIB,
        memory_bandwidth_bytes_per_s=1008e9,
        peak_tflops=82.6,
        peak_fp32_tflops=82.6,
        in_use_bytes=(300 * MIB, 1536 * MIB),
        uplinks=("10gbe", "1gbe", "wifi"),
    ),
    # NVIDIA GeForce RTX 3060 (12 GB): 12 GB GDDR6 at 15 Gbps on 192 bits = 360 GB/s,
    # 3584 CUDA cores at 1.78 GHz boost = 12.7 TFLOPS FP32.
    # https://www.nvidia.com/en-us/geforce/graphics-cards/30-series/rtx-3060-3060ti/
    DeviceProfile(
        name="RTX 3060",
        kind="cuda",
        memory_total_bytes=12 * GIB,
        memory_bandwidth_bytes_per_s=360e9,
        peak_tflops=12.7,
        peak_fp32_tflops=12.7,
        in_use_bytes=(300 * MIB, 1536 * MIB),
        uplinks=("10gbe", "1gbe", "wifi"),
    ),
    # NVIDIA A100 80GB SXM: 80 GB HBM2e, 2039 GB/s, FP16 tensor 312 TFLOPS dense,
    # FP32 19.5 TFLOPS.  A server: wired only.
    # https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf
    DeviceProfile(
        name="A100 80GB",
        kind="cuda",
        memory_total_bytes=80 * GIB,
        memory_bandwidth_bytes_per_s=2039e9,
        peak_tflops=312.0,
        peak_fp32_tflops=19.5,
        in_use_bytes=(500 * MIB, 1024 * MIB),
        uplinks=("10gbe",),
    ),
    # NVIDIA Jetson AGX Orin 64GB: 64 GB LPDDR5 unified, 204.8 GB/s; GPU 2048 CUDA
    # cores at 1.3 GHz = 5.3 TFLOPS FP32 (FP16 non-tensor 10.6).  The developer kit
    # has a 10 GbE port.
    # https://www.nvidia.com/content/dam/en-zz/Solutions/gtcf21/jetson-orin/nvidia-jetson-agx-orin-technical-brief.pdf
    DeviceProfile(
        name="Jetson AGX Orin 64GB",
        kind="jetson",
        memory_total_bytes=64 * GIB,
        memory_bandwidth_bytes_per_s=204.8e9,
        peak_tflops=10.6,
        peak_fp32_tflops=5.3,
        in_use_bytes=(2 * GIB, 4 * GIB),
        uplinks=("10gbe", "1gbe", "wifi"),
    ),
    # NVIDIA Jetson Orin Nano 8GB: 8 GB LPDDR5 unified, 68 GB/s; GPU 1024 CUDA cores
    # at 625 MHz = 1.28 TFLOPS FP32 (FP16 non-tensor 2.56).  1 GbE on the carrier.
    # https://developer.nvidia.com/embedded/jetson-modules (Orin Nano series datasheet)
    DeviceProfile(
        name="Jetson Orin Nano 8GB",
        kind="jetson",
        memory_total_bytes=8 * GIB,
        memory_bandwidth_bytes_per_s=68e9,
        peak_tflops=2.56,
        peak_fp32_tflops=1.28,
        in_use_bytes=(1 * GIB, 2 * GIB),
        uplinks=("1gbe", "wifi"),
    ),
    # Raspberry Pi 5 8GB: LPDDR4X-4267 on a 32-bit bus = 17.1 GB/s; 4x Cortex-A76 at
    # 2.4 GHz, two 128-bit NEON FMA pipes each: 4 x 2.4e9 x 16 = 154 GFLOPS FP32 (an
    # assumption from the core's pipes; the brief gives no FLOPS).  Gigabit Ethernet,
    # Wi-Fi 5.  The daemon publishes no compute figure for a CPU, so placement
    # assumes UNMEASURED_DEVICE_TFLOPS (0.1) there.
    # https://datasheets.raspberrypi.com/rpi5/raspberry-pi-5-product-brief.pdf
    DeviceProfile(
        name="Raspberry Pi 5 8GB",
        kind="cpu",
        memory_total_bytes=8 * GIB,
        memory_bandwidth_bytes_per_s=17.1e9,
        peak_tflops=0.154,
        peak_fp32_tflops=None,
        in_use_bytes=(400 * MIB, 1 * GIB),
        uplinks=("1gbe", "wifi"),
    ),
)
"""The device kinds a simulated cluster is drawn from, uniformly."""

DECODE_BANDWIDTH_EFFICIENCY = 0.7
"""Share of datasheet memory bandwidth a batch-1 decode sustains.  An assumption:
kernels stream weights at 70-90 % of peak on GPUs, less on LPDDR boards; one figure
for all keeps the comparison about placement, not about kernels."""
BUSY_PROBABILITY = 0.25
"""Chance that another workload holds part of a device's memory."""
BUSY_SHARE = (0.1, 0.5)
"""Share of total memory such a workload holds, uniform."""


@dataclass(frozen=True, kw_only=True, slots=True)
class LinkClass:
    """One kind of uplink: what it carries and how long a round trip takes."""

    name: str
    bandwidth_bytes_per_s: float
    """TCP goodput, not line rate."""
    rtt_s: float
    """Round trip between two nodes both on this class, through one switch / AP."""


LINK_CLASSES: dict[str, LinkClass] = {
    # 10GBASE-T (IEEE 802.3an): 10 Gbit/s line rate, ~9.4 Gbit/s TCP goodput after
    # Ethernet/IP/TCP framing (1500-byte MTU: 1448 payload bytes per 1538 on the wire).
    # RTT through one switch: ~0.1 ms (an assumption: host stacks dominate, the switch
    # adds microseconds).
    "10gbe": LinkClass(name="10 GbE", bandwidth_bytes_per_s=9.4e9 / 8, rtt_s=0.1e-3),
    # 1000BASE-T (IEEE 802.3ab): ~940 Mbit/s TCP goodput; RTT ~0.25 ms through one
    # switch (assumption, as above, plus slower NICs and interrupt moderation).
    "1gbe": LinkClass(name="1 GbE", bandwidth_bytes_per_s=940e6 / 8, rtt_s=0.25e-3),
    # Wi-Fi 5/6 (IEEE 802.11ac/ax) client at a few metres: PHY rates of 433-1201
    # Mbit/s give ~300 Mbit/s of TCP goodput in practice; RTT 3-5 ms with power save
    # and contention (assumption: 4 ms).  Two Wi-Fi legs share the air, which the
    # "slower leg" rule does not charge for; it flatters Wi-Fi, not us.
    "wifi": LinkClass(name="Wi-Fi", bandwidth_bytes_per_s=300e6 / 8, rtt_s=4e-3),
}
RTT_JITTER = (0.8, 1.25)
"""Per-pair multiplier on the RTT, uniform: switches, cables and load differ."""


# --- models -------------------------------------------------------------------------

_LLAMA3_ROPE_SCALING = {
    "factor": 8.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3",
}

MODELS: dict[str, dict[str, Any]] = {
    # https://huggingface.co/meta-llama/Llama-3.2-1B/blob/main/config.json
    "Llama-3.2-1B": {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "bos_token_id": 128000,
        "eos_token_id": 128001,
        "head_dim": 64,
        "hidden_act": "silu",
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "max_position_embeddings": 131072,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": 32,
        "num_hidden_layers": 16,
        "num_key_value_heads": 8,
        "rms_norm_eps": 1e-05,
        "rope_scaling": {**_LLAMA3_ROPE_SCALING, "factor": 32.0},
        "rope_theta": 500000.0,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "vocab_size": 128256,
    },
    # https://huggingface.co/meta-llama/Llama-3.2-3B/blob/main/config.json
    "Llama-3.2-3B": {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "bos_token_id": 128000,
        "eos_token_id": 128001,
        "head_dim": 128,
        "hidden_act": "silu",
        "hidden_size": 3072,
        "intermediate_size": 8192,
        "max_position_embeddings": 131072,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": 24,
        "num_hidden_layers": 28,
        "num_key_value_heads": 8,
        "rms_norm_eps": 1e-05,
        "rope_scaling": {**_LLAMA3_ROPE_SCALING, "factor": 32.0},
        "rope_theta": 500000.0,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "vocab_size": 128256,
    },
    # https://huggingface.co/mistralai/Mistral-7B-v0.1/blob/main/config.json
    "Mistral-7B": {
        "architectures": ["MistralForCausalLM"],
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": 4096,
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
        "vocab_size": 32000,
    },
    # https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json
    "Llama-3.1-8B": {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "bos_token_id": 128000,
        "eos_token_id": 128001,
        "hidden_act": "silu",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "max_position_embeddings": 131072,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": 32,
        "num_hidden_layers": 32,
        "num_key_value_heads": 8,
        "rms_norm_eps": 1e-05,
        "rope_scaling": _LLAMA3_ROPE_SCALING,
        "rope_theta": 500000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "vocab_size": 128256,
    },
    # https://huggingface.co/Qwen/Qwen2.5-14B/blob/main/config.json
    "Qwen2.5-14B": {
        "architectures": ["Qwen2ForCausalLM"],
        "bos_token_id": 151643,
        "eos_token_id": 151643,
        "hidden_act": "silu",
        "hidden_size": 5120,
        "intermediate_size": 13824,
        "max_position_embeddings": 131072,
        "model_type": "qwen2",
        "num_attention_heads": 40,
        "num_hidden_layers": 48,
        "num_key_value_heads": 8,
        "rms_norm_eps": 1e-05,
        "rope_theta": 1000000.0,
        "sliding_window": 131072,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "use_sliding_window": False,
        "vocab_size": 152064,
    },
    # https://huggingface.co/Qwen/Qwen2.5-32B/blob/main/config.json
    "Qwen2.5-32B": {
        "architectures": ["Qwen2ForCausalLM"],
        "bos_token_id": 151643,
        "eos_token_id": 151643,
        "hidden_act": "silu",
        "hidden_size": 5120,
        "intermediate_size": 27648,
        "max_position_embeddings": 131072,
        "model_type": "qwen2",
        "num_attention_heads": 40,
        "num_hidden_layers": 64,
        "num_key_value_heads": 8,
        "rms_norm_eps": 1e-05,
        "rope_theta": 1000000.0,
        "sliding_window": 131072,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "use_sliding_window": False,
        "vocab_size": 152064,
    },
    # https://huggingface.co/meta-llama/Llama-3.1-70B/blob/main/config.json
    "Llama-3.1-70B": {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "bos_token_id": 128000,
        "eos_token_id": 128001,
        "hidden_act": "silu",
        "hidden_size": 8192,
        "intermediate_size": 28672,
        "max_position_embeddings": 131072,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": 64,
        "num_hidden_layers": 80,
        "num_key_value_heads": 8,
        "rms_norm_eps": 1e-05,
        "rope_scaling": _LLAMA3_ROPE_SCALING,
        "rope_theta": 500000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "vocab_size": 128256,
    },
}
"""Hugging Face configs, smallest first."""

PARAMETERS: dict[str, int] = {
    "Llama-3.2-1B": 1_235_814_400,
    "Llama-3.2-3B": 3_212_749_824,
    "Mistral-7B": 7_241_732_096,
    "Llama-3.1-8B": 8_030_261_248,
    "Qwen2.5-14B": 14_770_033_664,
    "Qwen2.5-32B": 32_763_876_352,
    "Llama-3.1-70B": 70_553_706_496,
}
"""Published parameter counts (model cards / safetensors index totals)."""
