"""The building blocks of a Llama-family decoder layer, in plain ``torch.nn``.

Parameter names match the Hugging Face checkpoint keys below ``model.layers.N.``
(``self_attn.q_proj.weight``, ``mlp.gate_proj.weight``, ``input_layernorm.weight``...)
so loading is a renaming of the layer index only.

Numerics follow transformers, so a float32 run matches it to rounding: RMSNorm
normalises in float32 and casts back before the weight; attention scales by
``head_dim ** -0.5``; the MLP is ``down(silu(gate(x)) * up(x))``.
"""

from __future__ import annotations

from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import nn

from vramancer_node.runtime.kv_cache import KVCache
from vramancer_node.runtime.model_config import ModelConfig
from vramancer_node.runtime.rotary import apply_rotary


class Factory(TypedDict):
    """``device=`` and ``dtype=`` for parameter creation (``meta`` while loading)."""

    device: torch.device
    dtype: torch.dtype


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float, factory: Factory) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size, **factory))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x32 = x.to(torch.float32)
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)


class Attention(nn.Module):
    """Grouped-query attention: ``num_attention_heads`` query heads share
    ``num_key_value_heads`` key/value heads in groups of consecutive query heads."""

    def __init__(self, config: ModelConfig, factory: Factory) -> None:
        super().__init__()
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        q_size = self.heads * self.head_dim
        kv_size = self.kv_heads * self.head_dim
        hidden, qkv_bias = config.hidden_size, config.qkv_bias
        self.q_proj = nn.Linear(hidden, q_size, bias=qkv_bias, **factory)
        self.k_proj = nn.Linear(hidden, kv_size, bias=qkv_bias, **factory)
        self.v_proj = nn.Linear(hidden, kv_size, bias=qkv_bias, **factory)
        self.o_proj = nn.Linear(q_size, hidden, bias=config.o_bias, **factory)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: KVCache,
        layer: int,
        start: int,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        batch, tokens, _ = x.shape
        q = self.q_proj(x).view(batch, tokens, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, tokens, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, tokens, self.kv_heads, self.head_dim).transpose(1, 2)
        q = apply_rotary(q, cos, sin)
        k = apply_rotary(k, cos, sin)
        k_all, v_all = cache.write(layer, start, k, v)
        # Fold each group of query heads into the token axis so they attend to their
        # shared key/value head without copying the cache `group` times.
        group = self.heads // self.kv_heads
        q = q.reshape(batch, self.kv_heads, group * tokens, self.head_dim)
        if mask is not None:
            mask = mask.repeat(group, 1)
        out = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask)
        out = out.reshape(batch, self.heads, tokens, self.head_dim).transpose(1, 2)
        return self.o_proj(out.reshape(batch, tokens, self.heads * self.head_dim))  # type: ignore[no-any-return]


class MLP(nn.Module):
    """SwiGLU feed-forward."""

    def __init__(self, config: ModelConfig, factory: Factory) -> None:
        super().__init__()
        hidden, inner, bias = config.hidden_size, config.intermediate_size, config.mlp_bias
        self.gate_proj = nn.Linear(hidden, inner, bias=bias, **factory)
        self.up_proj = nn.Linear(hidden, inner, bias=bias, **factory)
        self.down_proj = nn.Linear(inner, hidden, bias=bias, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))  # type: ignore[no-any-return]


class DecoderLayer(nn.Module):
    """Pre-norm residual block: attention, then MLP."""

    def __init__(self, config: ModelConfig, index: int, factory: Factory) -> None:
        super().__init__()
        self.sliding_window = config.sliding_windows[index]
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, factory)
        self.self_attn = Attention(config, factory)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, factory)
        self.mlp = MLP(config, factory)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: KVCache,
        layer: int,
        start: int,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, layer, start, mask)
        return x + self.mlp(self.post_attention_layernorm(x))  # type: ignore[no-any-return]


def attention_mask(
    start: int, tokens: int, window: int | None, device: torch.device
) -> torch.Tensor | None:
    """Boolean ``[tokens, start + tokens]`` mask (True: may attend) for queries at
    positions [start, start + tokens): causal, and within ``window`` if set. None when
    every cached position may be attended (a single token without a window)."""
    end = start + tokens
    if tokens == 1 and (window is None or end <= window):
        return None
    query = torch.arange(start, end, device=device)[:, None]
    key = torch.arange(end, device=device)[None, :]
    allowed = key <= query
    if window is not None:
        allowed &= query - key < window
    return allowed
