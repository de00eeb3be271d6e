"""What one model costs to place: bytes, KV cache and FLOPs per layer, from config.json.

Theory of operation
-------------------
The placement optimiser needs a handful of numbers per model, all derived from the
Hugging Face ``config.json`` of a Llama-family decoder (Llama, Mistral, Qwen2 share the
shape)::

    embed_tokens                  vocab x hidden                     first stage
    num_hidden_layers x layer:
        input RMSNorm             hidden
        q_proj                    hidden x (heads * head_dim)     (+ bias, see below)
        k_proj, v_proj            hidden x (kv_heads * head_dim)  (+ bias)
        o_proj                    (heads * head_dim) x hidden     (+ bias, Llama only)
        post-attention RMSNorm    hidden
        gate_proj, up_proj        hidden x intermediate           (+ bias if mlp_bias)
        down_proj                 intermediate x hidden           (+ bias if mlp_bias)
    norm (final RMSNorm)          hidden                             last stage
    lm_head                       hidden x vocab                     last stage

Biases: Llama and Mistral have none unless ``attention_bias`` (q/k/v/o) or
``mlp_bias`` (gate/up/down) is true; Qwen2 always has q/k/v biases and no o bias
(``Qwen2Attention`` hard-codes them), whatever ``attention_bias`` says.

*Tied embeddings* (``tie_word_embeddings``): ``lm_head`` is the embedding matrix, so it
adds no parameters.  It still has to be in memory where the head runs: a model on one
device stores the matrix once, a split model stores it on the first stage (lookup) and
again on the last stage (head).  :meth:`ModelProfile.fixed_bytes` encodes this.

*KV cache*: ``2 * kv_heads * head_dim * dtype_bytes`` per token per layer (keys and
values, in the weights' dtype).  Sliding-window attention (Mistral v0.1) is ignored:
the cache is reserved for the whole context, which never under-reserves.

*FLOPs per decoded token* (one new token, batch 1):

* per layer ``2 * layer_params`` (a multiply and an add per weight; biases and norms are
  counted the same way, a rounding error) plus attention over the context:
  ``q.K^T`` and ``softmax.V`` each cost ``2 * heads * head_dim`` per cached token, so
  ``4 * heads * head_dim * context_tokens``;
* the head ``2 * vocab * hidden``; the embedding lookup is free.

*Activations* crossing a stage boundary are one hidden state per token:
``hidden * dtype_bytes``.

Config forms
------------
Both older and current ``transformers`` forms are read: the dtype under ``dtype``
(current) or ``torch_dtype`` (older), the RoPE base as top-level ``rope_theta``
(older) or ``rope_parameters.rope_theta`` (current), ``num_key_value_heads`` absent or
null meaning plain multi-head attention, ``head_dim`` absent or null meaning
``hidden_size / num_attention_heads``.  Every missing or invalid key is named in one
:class:`ProfileError`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from protocol.placement.errors import ProfileError

DTYPE_BYTES: Mapping[str, int] = {"float32": 4, "float16": 2, "bfloat16": 2}
"""Bytes per element of the supported weight dtypes (canonical names)."""
DTYPE_ALIASES: Mapping[str, str] = {
    "fp32": "float32",
    "float": "float32",
    "fp16": "float16",
    "half": "float16",
    "bf16": "bfloat16",
}
"""Other spellings accepted for ``dtype``; a ``torch.`` prefix is also stripped."""
DTYPE_FROM_CONFIG = "auto"
"""``dtype`` value that means "the dtype the checkpoint was saved in"."""
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")
"""``model_type`` values whose layer shape this module knows."""
QKV_BIAS_MODEL_TYPES = frozenset({"qwen2"})
"""Families whose q/k/v projections always carry a bias (and o_proj none)."""
CONFIG_INT_MAX = 2**40
"""Largest size accepted for any dimension: far above any real model, below overflow."""

_REQUIRED_INT_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "vocab_size",
)


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelProfile:
    """Shape of a Llama-family decoder and the placement costs derived from it.

    Build it with :meth:`from_hf_config`; the constructor is public for tests and
    checks that every size is a positive int.
    """

    model_type: str
    """``llama``, ``mistral`` or ``qwen2``."""
    dtype: str
    """Weight and KV-cache dtype, canonical name (a key of :data:`DTYPE_BYTES`)."""
    num_layers: int
    """Decoder layers (``num_hidden_layers``)."""
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_kv_heads: int
    """Key/value heads; fewer than attention heads under grouped-query attention."""
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool
    """True when ``lm_head`` shares the embedding matrix (see the module docstring)."""
    qkv_bias: bool = False
    """q/k/v projections carry biases (Qwen2, or Llama with ``attention_bias``)."""
    o_bias: bool = False
    """o_proj carries a bias (Llama with ``attention_bias``)."""
    mlp_bias: bool = False
    """gate/up/down projections carry biases (Llama with ``mlp_bias``)."""
    rope_theta: float | None = None
    """RoPE base, for the runtime; ``None`` when the config does not say."""
    max_position_embeddings: int | None = None
    """Longest context the model was trained for, when the config says."""

    def __post_init__(self) -> None:
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"model_type must be one of {SUPPORTED_MODEL_TYPES}")
        if self.dtype not in DTYPE_BYTES:
            raise ValueError(f"dtype must be one of {tuple(DTYPE_BYTES)}, got {self.dtype!r}")
        for name in (
            "num_layers",
            "hidden_size",
            "intermediate_size",
            "num_attention_heads",
            "num_kv_heads",
            "head_dim",
            "vocab_size",
        ):
            value = getattr(self, name)
            if not _is_int(value) or not 0 < value <= CONFIG_INT_MAX:
                raise ValueError(f"{name} must be an int in [1, {CONFIG_INT_MAX}]")
        if self.num_attention_heads % self.num_kv_heads:
            raise ValueError("num_attention_heads must be a multiple of num_kv_heads")

    @classmethod
    def from_hf_config(cls, config: Mapping[str, Any], dtype: str) -> ModelProfile:
        """Profile a parsed ``config.json`` for weights and KV cache in ``dtype``.

        ``dtype`` is ``float32``, ``float16`` or ``bfloat16`` (aliases in
        :data:`DTYPE_ALIASES`), or ``auto`` for the config's own ``dtype`` /
        ``torch_dtype``.  Raises :class:`ProfileError` naming every missing or
        invalid key.
        """
        if not isinstance(config, Mapping):
            raise ProfileError(f"config must be a JSON object, got {type(config).__name__}")
        problems: list[str] = []
        sizes = {key: _positive_int(config, key, problems) for key in _REQUIRED_INT_KEYS}
        model_type = config.get("model_type")
        if model_type is None:
            problems.append("model_type is missing")
        elif model_type not in SUPPORTED_MODEL_TYPES:
            problems.append(f"model_type {model_type!r} is not one of {SUPPORTED_MODEL_TYPES}")
        heads, hidden = sizes["num_attention_heads"], sizes["hidden_size"]
        kv_heads, head_dim = _attention_shape(config, heads, hidden, problems)
        flags = {
            key: _bool(config, key, default, problems)
            for key, default in (
                ("tie_word_embeddings", False),
                ("attention_bias", False),
                ("mlp_bias", False),
            )
        }
        canonical_dtype = _dtype(config, dtype, problems)
        rope_theta = _rope_theta(config, problems)
        max_positions = _optional_positive_int(config, "max_position_embeddings", problems)
        if problems:
            raise ProfileError("config.json cannot be profiled: " + "; ".join(problems))
        qwen_bias = model_type in QKV_BIAS_MODEL_TYPES
        llama_bias = model_type == "llama" and flags["attention_bias"]
        return cls(
            model_type=str(model_type),
            dtype=canonical_dtype,
            num_layers=sizes["num_hidden_layers"],
            hidden_size=hidden,
            intermediate_size=sizes["intermediate_size"],
            num_attention_heads=heads,
            num_kv_heads=kv_heads,
            head_dim=head_dim,
            vocab_size=sizes["vocab_size"],
            tie_word_embeddings=flags["tie_word_embeddings"],
            qkv_bias=qwen_bias or llama_bias,
            o_bias=llama_bias,
            mlp_bias=model_type == "llama" and flags["mlp_bias"],
            rope_theta=rope_theta,
            max_position_embeddings=max_positions,
        )

    # --- parameters -------------------------------------------------------------

    @property
    def dtype_bytes(self) -> int:
        """Bytes per weight, KV-cache and activation element."""
        return DTYPE_BYTES[self.dtype]

    @property
    def layer_param_count(self) -> int:
        """Parameters of one decoder layer (attention, MLP, two RMSNorms)."""
        hidden, inter = self.hidden_size, self.intermediate_size
        q_dim = self.num_attention_heads * self.head_dim
        kv_dim = self.num_kv_heads * self.head_dim
        attention = hidden * q_dim + 2 * hidden * kv_dim + q_dim * hidden
        if self.qkv_bias:
            attention += q_dim + 2 * kv_dim
        if self.o_bias:
            attention += hidden
        mlp = 3 * hidden * inter
        if self.mlp_bias:
            mlp += 2 * inter + hidden
        return attention + mlp + 2 * hidden

    @property
    def embedding_param_count(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def head_param_count(self) -> int:
        """Final norm plus ``lm_head``; the latter is 0 when tied to the embedding."""
        lm_head = 0 if self.tie_word_embeddings else self.vocab_size * self.hidden_size
        return self.hidden_size + lm_head

    @property
    def parameter_count(self) -> int:
        """Distinct parameters of the model (a tied matrix counts once)."""
        layers = self.num_layers * self.layer_param_count
        return self.embedding_param_count + layers + self.head_param_count

    # --- bytes ------------------------------------------------------------------

    @property
    def layer_weight_bytes(self) -> int:
        return self.layer_param_count * self.dtype_bytes

    @property
    def embedding_bytes(self) -> int:
        return self.embedding_param_count * self.dtype_bytes

    @property
    def head_bytes(self) -> int:
        """Final norm plus an untied ``lm_head``; see :meth:`fixed_bytes` for tied ones."""
        return self.head_param_count * self.dtype_bytes

    @property
    def weight_bytes(self) -> int:
        """All distinct weights, as one device holding the whole model stores them."""
        return self.parameter_count * self.dtype_bytes

    @property
    def kv_bytes_per_token_per_layer(self) -> int:
        """Keys and values of one token in one layer."""
        return 2 * self.num_kv_heads * self.head_dim * self.dtype_bytes

    def layer_bytes(self, context_tokens: int) -> int:
        """Weights plus the KV cache for ``context_tokens`` of one layer."""
        return self.layer_weight_bytes + context_tokens * self.kv_bytes_per_token_per_layer

    def fixed_bytes(self, *, first: bool, last: bool) -> int:
        """Bytes a stage holds besides its layers.

        The first stage holds the embedding, the last the final norm and ``lm_head``.
        With tied embeddings the last stage needs the embedding matrix as its head,
        which a stage that is also first already has.
        """
        fixed = self.embedding_bytes if first else 0
        if last:
            fixed += self.head_bytes
            if self.tie_word_embeddings and not first:
                fixed += self.embedding_bytes
        return fixed

    @property
    def activation_bytes_per_token(self) -> int:
        """One hidden state: what crosses each stage boundary per decoded token."""
        return self.hidden_size * self.dtype_bytes

    # --- FLOPs ------------------------------------------------------------------

    def layer_flops_per_token(self, context_tokens: int) -> float:
        """FLOPs of one layer for one new token attending to ``context_tokens``."""
        attention = 4 * self.num_attention_heads * self.head_dim * context_tokens
        return float(2 * self.layer_param_count + attention)

    @property
    def head_flops_per_token(self) -> float:
        """FLOPs of the final norm and ``lm_head`` for one token."""
        return float(2 * (self.hidden_size + self.vocab_size * self.hidden_size))


def _attention_shape(
    config: Mapping[str, Any], heads: int, hidden: int, problems: list[str]
) -> tuple[int, int]:
    """``(num_kv_heads, head_dim)``: absent or null keys take their older defaults."""
    kv_heads = _optional_positive_int(config, "num_key_value_heads", problems) or heads
    if heads and kv_heads and heads % kv_heads:
        problems.append(
            f"num_attention_heads ({heads}) is not a multiple of num_key_value_heads ({kv_heads})"
        )
    head_dim = _optional_positive_int(config, "head_dim", problems)
    if head_dim is None and hidden and heads:
        if hidden % heads:
            problems.append(
                f"hidden_size ({hidden}) is not a multiple of num_attention_heads "
                f"({heads}) and head_dim is absent"
            )
        head_dim = hidden // heads
    return kv_heads, head_dim or 0


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(config: Mapping[str, Any], key: str, problems: list[str]) -> int:
    if key not in config:
        problems.append(f"{key} is missing")
        return 0
    value = config[key]
    if not _is_int(value) or not 0 < value <= CONFIG_INT_MAX:
        problems.append(f"{key} must be an int in [1, {CONFIG_INT_MAX}], got {value!r}")
        return 0
    return int(value)


def _optional_positive_int(config: Mapping[str, Any], key: str, problems: list[str]) -> int | None:
    if config.get(key) is None:
        return None
    return _positive_int(config, key, problems) or None


def _bool(config: Mapping[str, Any], key: str, default: bool, problems: list[str]) -> bool:
    value = config.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        problems.append(f"{key} must be true or false, got {value!r}")
        return default
    return value


def canonical_dtype(name: str) -> str | None:
    """The canonical name of a dtype spelling, or ``None`` when unsupported."""
    lowered = name.strip().lower().removeprefix("torch.")
    lowered = DTYPE_ALIASES.get(lowered, lowered)
    return lowered if lowered in DTYPE_BYTES else None


def _dtype(config: Mapping[str, Any], dtype: object, problems: list[str]) -> str:
    supported = ", ".join((*DTYPE_BYTES, DTYPE_FROM_CONFIG))
    if not isinstance(dtype, str):
        problems.append(f"dtype argument must be a str ({supported}), got {dtype!r}")
        return ""
    if dtype.strip().lower() != DTYPE_FROM_CONFIG:
        found = canonical_dtype(dtype)
        if found is None:
            problems.append(f"dtype argument {dtype!r} is not one of {supported}")
            return ""
        return found
    # Current transformers write "dtype"; older ones "torch_dtype".
    key = "dtype" if config.get("dtype") is not None else "torch_dtype"
    value = config.get(key)
    if value is None:
        problems.append("dtype 'auto' needs the config key dtype or torch_dtype")
        return ""
    found = canonical_dtype(value) if isinstance(value, str) else None
    if found is None:
        problems.append(f"{key} {value!r} is not one of {', '.join(DTYPE_BYTES)}")
        return ""
    return found


def _rope_theta(config: Mapping[str, Any], problems: list[str]) -> float | None:
    # Older configs: top-level rope_theta; current: rope_parameters.rope_theta.
    parameters = config.get("rope_parameters")
    if parameters is not None and not isinstance(parameters, Mapping):
        problems.append(f"rope_parameters must be an object, got {parameters!r}")
        parameters = None
    key, value = "rope_theta", config.get("rope_theta")
    if value is None and parameters is not None:
        key, value = "rope_parameters.rope_theta", parameters.get("rope_theta")
    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        problems.append(f"{key} must be a positive number, got {value!r}")
        return None
    return float(value)
