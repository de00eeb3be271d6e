"""The architecture of a Llama-family checkpoint, read from its ``config.json``.

Llama, Mistral and Qwen2 share one shape: token embedding, N decoder layers (RMSNorm,
grouped-query attention with rotary positions, RMSNorm, SwiGLU MLP), final RMSNorm and
an LM head that may be tied to the embedding. They differ only in flags read here:

==========  ==============  ==========================  ===============================
model_type  q/k/v/o bias    sliding window               notes
==========  ==============  ==========================  ===============================
llama       attention_bias  never                        ``mlp_bias`` honoured
mistral     none            ``sliding_window`` if set    every layer
qwen2       q/k/v only      if ``use_sliding_window``    layers from ``layer_types``, else
                                                         those >= ``max_window_layers``
==========  ==============  ==========================  ===============================

Both the older and the current transformers spellings are read:

- ``rope_theta`` + ``rope_scaling`` at top level (old) or one ``rope_parameters`` map
  holding ``rope_theta`` and ``rope_type`` (transformers >= 5); the scaling kind is
  ``rope_type`` or the older ``type``.
- ``torch_dtype`` (old) or ``dtype`` — informational only: each node picks the dtype it
  computes in.
- ``head_dim`` present (and not null) or derived as ``hidden_size // num_attention_heads``;
  ``num_key_value_heads`` absent means plain multi-head attention.

Supported ``rope_type``: ``default`` (or none), ``linear`` and ``llama3``. The others
(``dynamic``, ``yarn``, ``longrope``, ...) change frequencies with the sequence length or
rescale attention, and are refused with a ``CheckpointError`` rather than run wrongly.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vramancer_node.runtime.errors import CheckpointError

CONFIG_FILE_NAME = "config.json"
CONFIG_FILE_BYTES_MAX = 1 << 20
"""A config.json is a few kB; anything past 1 MiB is not one."""

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3")
SUPPORTED_ACTIVATIONS = ("silu", "swish")

DEFAULT_ROPE_THETA = 10000.0
DEFAULT_RMS_NORM_EPS = 1e-6
DEFAULT_MAX_POSITION_EMBEDDINGS = 2048


@dataclass(frozen=True, kw_only=True)
class RopeScaling:
    """How rotary frequencies are computed.

    ``rope_type`` is one of ``SUPPORTED_ROPE_TYPES``. ``factor`` divides frequencies
    (``linear``: all of them; ``llama3``: the low ones, smoothly). The ``llama3`` fields
    are unused otherwise.
    """

    rope_type: str = "default"
    theta: float = DEFAULT_ROPE_THETA
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """One Llama-family architecture. Every field is validated by ``from_dict``."""

    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    rope: RopeScaling
    max_position_embeddings: int
    tie_word_embeddings: bool
    qkv_bias: bool
    """q_proj, k_proj and v_proj carry a bias (Qwen2 always; Llama if attention_bias)."""
    o_bias: bool
    """o_proj carries a bias (Llama with attention_bias)."""
    mlp_bias: bool
    sliding_windows: tuple[int | None, ...]
    """Per layer: attend to at most this many most recent positions, or None for all."""
    checkpoint_dtype: str | None
    """The dtype the checkpoint was saved in, as written (``float32``, ``bfloat16``...)."""

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, source: str = CONFIG_FILE_NAME) -> ModelConfig:
        """Validate a parsed config.json; ``source`` names the file in errors."""
        reader = _Reader(raw, source)
        model_type = reader.get("model_type", str)
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise CheckpointError(
                f"{source}: unsupported model_type {model_type!r}; "
                f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
            )
        act = reader.get("hidden_act", str, default="silu")
        if act not in SUPPORTED_ACTIVATIONS:
            raise CheckpointError(f"{source}: unsupported hidden_act {act!r}; only silu")
        hidden_size = reader.positive("hidden_size")
        heads = reader.positive("num_attention_heads")
        kv_heads = reader.positive("num_key_value_heads", default=heads)
        if heads % kv_heads:
            raise CheckpointError(
                f"{source}: num_attention_heads={heads} is not a multiple of "
                f"num_key_value_heads={kv_heads}"
            )
        head_dim = reader.positive("head_dim", default=hidden_size // heads)
        if head_dim % 2 or head_dim == 0:
            raise CheckpointError(f"{source}: head_dim={head_dim} must be even and > 0")
        layers = reader.positive("num_hidden_layers")
        attention_bias = reader.get("attention_bias", bool, default=False)
        dtype = raw.get("dtype", raw.get("torch_dtype"))
        return cls(
            model_type=model_type,
            vocab_size=reader.positive("vocab_size"),
            hidden_size=hidden_size,
            intermediate_size=reader.positive("intermediate_size"),
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            head_dim=head_dim,
            rms_norm_eps=reader.number("rms_norm_eps", default=DEFAULT_RMS_NORM_EPS),
            rope=_read_rope(reader),
            max_position_embeddings=reader.positive(
                "max_position_embeddings", default=DEFAULT_MAX_POSITION_EMBEDDINGS
            ),
            tie_word_embeddings=reader.get("tie_word_embeddings", bool, default=False),
            qkv_bias=model_type == "qwen2" or attention_bias,
            o_bias=model_type == "llama" and attention_bias,
            mlp_bias=model_type == "llama" and reader.get("mlp_bias", bool, default=False),
            sliding_windows=_read_sliding_windows(reader, model_type, layers),
            checkpoint_dtype=dtype if isinstance(dtype, str) else None,
        )


def read_model_config(checkpoint_dir: str | Path) -> ModelConfig:
    """Read and validate ``checkpoint_dir/config.json``."""
    path = Path(checkpoint_dir) / CONFIG_FILE_NAME
    try:
        with path.open("rb") as file:
            data = file.read(CONFIG_FILE_BYTES_MAX + 1)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc}") from exc
    if len(data) > CONFIG_FILE_BYTES_MAX:
        raise CheckpointError(f"{path}: larger than {CONFIG_FILE_BYTES_MAX} bytes")
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: top level is not a JSON object")
    return ModelConfig.from_dict(raw, source=str(path))


class _Reader:
    """Typed access to one JSON object, with errors naming the file and key."""

    def __init__(self, raw: dict[str, Any], source: str) -> None:
        self.raw = raw
        self.source = source

    def get(self, key: str, kind: type[Any], *, default: Any = ...) -> Any:
        value = self.raw.get(key)
        if value is None:
            if default is ...:
                raise CheckpointError(f"{self.source}: missing key {key!r}")
            return default
        # bool is an int in Python; a count of True layers is not what anyone meant.
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise CheckpointError(
                f"{self.source}: key {key!r} is {value!r}, "
                f"expected {getattr(kind, '__name__', 'number')}"
            )
        return value

    def positive(self, key: str, *, default: Any = ...) -> int:
        value: int = self.get(key, int, default=default)
        if value <= 0:
            raise CheckpointError(f"{self.source}: key {key!r} is {value}, expected > 0")
        return value

    def number(self, key: str, *, default: Any = ...) -> float:
        value = self.get(key, (int, float), default=default)  # type: ignore[arg-type]
        if not math.isfinite(value) or value <= 0:
            raise CheckpointError(f"{self.source}: key {key!r} is {value}, expected > 0")
        return float(value)

    def sub(self, key: str, raw: dict[str, Any]) -> _Reader:
        return _Reader(raw, f"{self.source} [{key}]")


def _read_rope(reader: _Reader) -> RopeScaling:
    params = reader.raw.get("rope_parameters")
    if params is not None:
        if not isinstance(params, dict):
            raise CheckpointError(f"{reader.source}: key 'rope_parameters' is not an object")
        if "rope_theta" not in params and "rope_type" not in params and "type" not in params:
            # transformers >= 5 may key parameters by layer type; Llama-family models
            # have a single kind of layer, so one shared map is expected.
            raise CheckpointError(
                f"{reader.source}: per-layer-type 'rope_parameters' are not supported"
            )
        scaling = reader.sub("rope_parameters", params)
        top_level_theta = reader.number("rope_theta", default=DEFAULT_ROPE_THETA)
        theta = scaling.number("rope_theta", default=top_level_theta)
    else:
        theta = reader.number("rope_theta", default=DEFAULT_ROPE_THETA)
        raw_scaling = reader.raw.get("rope_scaling") or {}
        if not isinstance(raw_scaling, dict):
            raise CheckpointError(f"{reader.source}: key 'rope_scaling' is not an object")
        scaling = reader.sub("rope_scaling", raw_scaling)
    rope_type = scaling.get("rope_type", str, default=scaling.get("type", str, default="default"))
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise CheckpointError(
            f"{scaling.source}: unsupported rope_type {rope_type!r}; "
            f"supported: {', '.join(SUPPORTED_ROPE_TYPES)}"
        )
    partial = scaling.number("partial_rotary_factor", default=1.0)
    if partial != 1.0:
        raise CheckpointError(f"{scaling.source}: partial_rotary_factor={partial} unsupported")
    if rope_type == "default":
        return RopeScaling(theta=theta)
    factor = scaling.number("factor")
    if rope_type == "linear":
        return RopeScaling(rope_type=rope_type, theta=theta, factor=factor)
    return RopeScaling(
        rope_type=rope_type,
        theta=theta,
        factor=factor,
        low_freq_factor=scaling.number("low_freq_factor"),
        high_freq_factor=scaling.number("high_freq_factor"),
        original_max_position_embeddings=scaling.positive("original_max_position_embeddings"),
    )


def _read_sliding_windows(reader: _Reader, model_type: str, layers: int) -> tuple[int | None, ...]:
    if model_type == "llama":
        return (None,) * layers
    if model_type == "qwen2" and not reader.get("use_sliding_window", bool, default=False):
        return (None,) * layers
    window: int | None = reader.get("sliding_window", int, default=None)
    if window is None:
        return (None,) * layers
    if window <= 0:
        raise CheckpointError(f"{reader.source}: key 'sliding_window' is {window}, expected > 0")
    layer_types = reader.raw.get("layer_types")
    if layer_types is not None:
        if not isinstance(layer_types, list) or len(layer_types) != layers:
            raise CheckpointError(
                f"{reader.source}: key 'layer_types' is not a list of {layers} strings"
            )
        return tuple(window if kind == "sliding_attention" else None for kind in layer_types)
    if model_type == "qwen2":
        first = reader.get("max_window_layers", int, default=0)
        return tuple(window if i >= first else None for i in range(layers))
    return (window,) * layers
