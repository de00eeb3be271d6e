"""A stage: a contiguous range of decoder layers, plus the embedding and/or head.

A model too big for one device runs as a pipeline of stages, stage ``i`` feeding its
hidden states to stage ``i + 1``. The first stage embeds token ids, the last one applies
the final norm and LM head; a single stage with both runs the whole model.

``load_stage`` builds the modules on the ``meta`` device (no memory, no random init),
asks the checkpoint for exactly the tensors those modules need, renamed from the
checkpoint's global layer index to the stage's local one, and assigns them. A stage
holding layers [2, 4) never reads layer 0's bytes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from vramancer_node.runtime.checkpoint import Checkpoint
from vramancer_node.runtime.errors import CheckpointError
from vramancer_node.runtime.kv_cache import KVCache
from vramancer_node.runtime.layers import DecoderLayer, Factory, RMSNorm, attention_mask
from vramancer_node.runtime.model_config import ModelConfig, read_model_config
from vramancer_node.runtime.rotary import RotaryEmbedding

DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}
"""Compute dtypes a node may choose, by the names config files and people use."""

DEVICE_TYPES = ("cuda", "mps", "cpu")


class Stage(nn.Module):
    """Layers [first_layer, last_layer_exclusive) of ``config``'s model.

    Built directly, the parameters are uninitialised on ``device`` (pass ``meta`` and
    use ``load_stage`` to fill them from a checkpoint).
    """

    def __init__(
        self,
        config: ModelConfig,
        first_layer: int,
        last_layer_exclusive: int,
        *,
        has_embedding: bool,
        has_head: bool,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        if not 0 <= first_layer <= last_layer_exclusive <= config.num_hidden_layers:
            raise ValueError(
                f"layer range [{first_layer}, {last_layer_exclusive}) is not within "
                f"[0, {config.num_hidden_layers}]"
            )
        if first_layer == last_layer_exclusive and not (has_embedding or has_head):
            raise ValueError("a stage needs at least one layer, the embedding or the head")
        self.config = config
        self.first_layer = first_layer
        self.last_layer_exclusive = last_layer_exclusive
        self.has_embedding = has_embedding
        self.has_head = has_head
        self.dtype = dtype
        factory: Factory = {"device": torch.device(device), "dtype": dtype}
        self.embed_tokens = (
            nn.Embedding(config.vocab_size, config.hidden_size, **factory)
            if has_embedding
            else None
        )
        self.layers = nn.ModuleList(
            DecoderLayer(config, index, factory)
            for index in range(first_layer, last_layer_exclusive)
        )
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, factory) if has_head else None
        self.lm_head = (
            nn.Linear(config.hidden_size, config.vocab_size, bias=False, **factory)
            if has_head
            else None
        )
        self.rotary = RotaryEmbedding(config.rope, config.head_dim)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def checkpoint_keys(self) -> dict[str, str]:
        """This stage's parameter names mapped to the checkpoint keys that fill them."""
        keys: dict[str, str] = {}
        for name in self.state_dict():
            if name.startswith("layers."):
                _, local, rest = name.split(".", 2)
                keys[name] = f"model.layers.{self.first_layer + int(local)}.{rest}"
            elif name == "lm_head.weight":
                tied = self.config.tie_word_embeddings
                keys[name] = "model.embed_tokens.weight" if tied else "lm_head.weight"
            else:
                keys[name] = f"model.{name}"
        return keys

    def new_kv_cache(self, *, max_tokens: int | None = None, batch_size: int = 1) -> KVCache:
        """An empty cache for one session, bounded by ``max_tokens`` positions
        (default: the model's ``max_position_embeddings``)."""
        return KVCache(
            num_layers=len(self.layers),
            batch_size=batch_size,
            num_kv_heads=self.config.num_key_value_heads,
            head_dim=self.config.head_dim,
            max_tokens=max_tokens or self.config.max_position_embeddings,
            dtype=self.dtype,
            device=self.device,
        )

    def forward(
        self,
        hidden_or_token_ids: torch.Tensor,
        positions: torch.Tensor,
        kv_cache: KVCache,
        *,
        last_only: bool = False,
    ) -> torch.Tensor:
        """Run this stage over T new positions.

        ``hidden_or_token_ids``: int token ids ``[B, T]`` if the stage has the embedding,
        else hidden states ``[B, T, hidden_size]``. ``positions``: 1-D ``[T]``, consecutive,
        starting at or before ``kv_cache.length`` (earlier entries are overwritten).
        Returns hidden states ``[B, T, hidden_size]``, or logits ``[B, T, vocab_size]``
        when the stage has the head (``[B, 1, vocab_size]`` with ``last_only``).
        """
        start, tokens = _check_positions(positions, kv_cache)
        x = self._input(hidden_or_token_ids, tokens)
        kv_cache.prepare(start, tokens)
        cos, sin = self.rotary.cos_sin(positions.to(x.device), x.dtype)
        masks: dict[int | None, torch.Tensor | None] = {}
        windows = self.config.sliding_windows[self.first_layer : self.last_layer_exclusive]
        for local, (layer, window) in enumerate(zip(self.layers, windows, strict=True)):
            if window not in masks:
                masks[window] = attention_mask(start, tokens, window, x.device)
            x = layer(x, cos, sin, kv_cache, local, start, masks[window])
        kv_cache.commit(start + tokens)
        if self.norm is None or self.lm_head is None:
            return x
        if last_only:
            x = x[:, -1:]
        return self.lm_head(self.norm(x))  # type: ignore[no-any-return]

    def _input(self, hidden_or_token_ids: torch.Tensor, tokens: int) -> torch.Tensor:
        if self.embed_tokens is not None:
            ids = hidden_or_token_ids
            if ids.dim() != 2 or ids.shape[1] != tokens or ids.is_floating_point():
                raise ValueError(
                    f"expected int token ids [B, {tokens}], got {ids.dtype} {list(ids.shape)}"
                )
            # An out-of-range id is a device-side assert on CUDA (the process is lost);
            # check here, where it is a plain error.
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.config.vocab_size):
                raise ValueError(f"token id outside [0, {self.config.vocab_size})")
            return self.embed_tokens(ids.to(self.device))  # type: ignore[no-any-return]
        hidden = hidden_or_token_ids
        expected = (tokens, self.config.hidden_size)
        if hidden.dim() != 3 or tuple(hidden.shape[1:]) != expected:
            raise ValueError(
                f"expected hidden states [B, {tokens}, {expected[1]}], got {list(hidden.shape)}"
            )
        return hidden.to(device=self.device, dtype=self.dtype)


def _check_positions(positions: torch.Tensor, kv_cache: KVCache) -> tuple[int, int]:
    if positions.dim() != 1 or positions.numel() == 0 or positions.is_floating_point():
        raise ValueError(
            f"positions must be a non-empty 1-D int tensor, got {list(positions.shape)}"
        )
    start, tokens = int(positions[0]), positions.numel()
    expected = torch.arange(start, start + tokens, device=positions.device)
    if not torch.equal(positions.to(torch.int64), expected):
        raise ValueError("positions must be consecutive")
    if not 0 <= start <= kv_cache.length:
        raise ValueError(f"positions start at {start}, the cache holds {kv_cache.length}")
    return start, tokens


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """``torch.float32``/``"fp32"``/``"float32"`` and the bf16 and fp16 equivalents."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"unsupported dtype {dtype}")
        return dtype
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unsupported dtype {dtype!r}; one of {', '.join(DTYPES)}") from None


def load_stage(
    checkpoint_dir: str | Path,
    first_layer: int,
    last_layer_exclusive: int,
    *,
    has_embedding: bool,
    has_head: bool,
    dtype: torch.dtype | str = torch.float32,
    device: torch.device | str = "cpu",
    config: ModelConfig | None = None,
) -> Stage:
    """Load one stage from a checkpoint directory, reading only its tensors."""
    target = torch.device(device)
    if target.type not in DEVICE_TYPES:
        raise ValueError(f"unsupported device {target}; one of {', '.join(DEVICE_TYPES)}")
    compute_dtype = resolve_dtype(dtype)
    config = config or read_model_config(checkpoint_dir)
    stage = Stage(
        config,
        first_layer,
        last_layer_exclusive,
        has_embedding=has_embedding,
        has_head=has_head,
        dtype=compute_dtype,
        device="meta",
    )
    names = stage.checkpoint_keys()
    meta_state = stage.state_dict()
    shapes = {key: tuple(meta_state[name].shape) for name, key in names.items()}
    checkpoint = Checkpoint(checkpoint_dir)
    if has_head and not config.tie_word_embeddings and "lm_head.weight" not in checkpoint:
        raise CheckpointError(
            f"{checkpoint.directory}: missing tensor 'lm_head.weight' "
            "(and tie_word_embeddings is false)"
        )
    tensors = checkpoint.load(shapes, dtype=compute_dtype, device=target)
    stage.load_state_dict({name: tensors[key] for name, key in names.items()}, assign=True)
    stage.eval()
    return stage
