"""The key/value cache of one session on one stage.

Attention at position ``p`` needs the keys and values of every earlier position. The
cache keeps them, so decoding one more token costs one layer pass over one token plus
an attention read over ``p`` cached entries: linear in sequence length, not quadratic.

Storage is two tensors ``[layers, batch, kv_heads, capacity, head_dim]`` in the stage's
dtype and device. Capacity starts small and doubles when a write needs more, never past
``max_tokens``: a short chat does not pay for the model's whole context window, and a
runaway session hits ``KVCacheFullError`` instead of exhausting device memory. Doubling
keeps the copying amortised O(1) per token.

Positions are cache slots: the entry for position ``p`` lives at index ``p``. A forward
pass starting at ``start <= length`` first truncates to ``start``, so a step resent after
a failure (or a rollback) overwrites instead of duplicating.

Sliding-window layers (Mistral) still keep every position: the window is applied by the
attention mask, so the bound is ``max_tokens`` either way. A ring buffer would save
memory there; it is not needed for correctness.
"""

from __future__ import annotations

import torch

from vramancer_node.runtime.errors import KVCacheFullError

INITIAL_CAPACITY_TOKENS = 256


class KVCache:
    """Keys and values for ``num_layers`` consecutive layers of one session."""

    def __init__(
        self,
        *,
        num_layers: int,
        batch_size: int,
        num_kv_heads: int,
        head_dim: int,
        max_tokens: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        if max_tokens <= 0 or batch_size <= 0:
            raise ValueError(f"max_tokens={max_tokens} and batch_size={batch_size} must be > 0")
        self.max_tokens = max_tokens
        self.length = 0
        """Positions [0, length) hold valid entries."""
        self._shape = (num_layers, batch_size, num_kv_heads, 0, head_dim)
        self._dtype = dtype
        self._device = device
        self.keys = self._allocate(min(INITIAL_CAPACITY_TOKENS, max_tokens))
        self.values = self._allocate(min(INITIAL_CAPACITY_TOKENS, max_tokens))

    @property
    def capacity_tokens(self) -> int:
        return self.keys.shape[3]

    @property
    def nbytes(self) -> int:
        """Device memory held now (both tensors)."""
        return 2 * self.keys.numel() * self.keys.element_size()

    def _allocate(self, capacity: int) -> torch.Tensor:
        layers, batch, heads, _, head_dim = self._shape
        return torch.zeros(
            (layers, batch, heads, capacity, head_dim), dtype=self._dtype, device=self._device
        )

    def prepare(self, start: int, tokens: int) -> None:
        """Make room for positions [start, start + tokens) and forget those >= start."""
        if not 0 <= start <= self.length:
            raise ValueError(f"start position {start} is past the cache length {self.length}")
        end = start + tokens
        if end > self.max_tokens:
            raise KVCacheFullError(f"{end} positions asked, the cache holds {self.max_tokens}")
        self.length = start
        if end > self.capacity_tokens:
            capacity = min(max(2 * self.capacity_tokens, end), self.max_tokens)
            for name in ("keys", "values"):
                old = getattr(self, name)
                new = self._allocate(capacity)
                new[:, :, :, :start] = old[:, :, :, :start]
                setattr(self, name, new)

    def write(
        self, layer: int, start: int, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``[B, kv_heads, T, head_dim]`` entries at positions [start, start + T) of
        ``layer`` (local index) and return views of all entries [0, start + T)."""
        end = start + keys.shape[2]
        self.keys[layer, :, :, start:end] = keys
        self.values[layer, :, :, start:end] = values
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def commit(self, end: int) -> None:
        """Mark positions [0, end) valid, once every layer has written them."""
        self.length = end
