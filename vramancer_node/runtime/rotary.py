"""Rotary position embedding (RoPE) in the Hugging Face "rotate half" layout.

Each head vector is split into two halves ``(x1, x2)`` and position ``p`` rotates pair
``i`` by angle ``p * inv_freq[i]``. Angles are computed in float32 whatever the model
dtype, then cos/sin are cast, as transformers does; otherwise bf16 positions beyond a
few hundred lose their low bits and the model drifts.

Frequencies are fixed per checkpoint (``RopeScaling``): ``linear`` divides every
frequency by ``factor``; ``llama3`` divides only the low ones and interpolates between
(Llama 3.1). Kinds that depend on the sequence length are refused by ``model_config``.
"""

from __future__ import annotations

import math

import torch

from vramancer_node.runtime.model_config import RopeScaling


def inverse_frequencies(rope: RopeScaling, head_dim: int) -> torch.Tensor:
    """float32 CPU tensor of ``head_dim // 2`` frequencies, scaled as ``rope`` says."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64).to(torch.float32) / head_dim
    inv_freq = 1.0 / (rope.theta**exponents)
    if rope.rope_type == "linear":
        return inv_freq / rope.factor
    if rope.rope_type == "llama3":
        return _llama3_frequencies(inv_freq, rope)
    return inv_freq


def _llama3_frequencies(inv_freq: torch.Tensor, rope: RopeScaling) -> torch.Tensor:
    old_context = rope.original_max_position_embeddings
    low_freq_wavelen = old_context / rope.low_freq_factor
    high_freq_wavelen = old_context / rope.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / rope.factor, inv_freq)
    smooth = (old_context / wavelen - rope.low_freq_factor) / (
        rope.high_freq_factor - rope.low_freq_factor
    )
    smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, scaled)


class RotaryEmbedding:
    """cos/sin tables for given positions. Holds one frequency tensor per device."""

    def __init__(self, rope: RopeScaling, head_dim: int) -> None:
        self._inv_freq = inverse_frequencies(rope, head_dim)
        self._on_device: dict[torch.device, torch.Tensor] = {}

    def cos_sin(
        self, positions: torch.Tensor, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of shape ``[T, head_dim]`` for 1-D ``positions`` of length T."""
        inv_freq = self._on_device.get(positions.device)
        if inv_freq is None:
            inv_freq = self._inv_freq.to(positions.device)
            self._on_device[positions.device] = inv_freq
        angles = positions.to(torch.float32)[:, None] * inv_freq[None, :]
        table = torch.cat((angles, angles), dim=-1)
        return table.cos().to(dtype), table.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` of shape ``[B, heads, T, head_dim]`` by per-position cos/sin."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin
