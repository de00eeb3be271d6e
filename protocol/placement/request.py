"""One placement question: which model, onto which members, for how much context.

Every knob of the optimiser is a field here with a named default; the request is
checked once, at construction, and a bad value raises ``ValueError`` naming the field
and its allowed range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from protocol.placement.profile import ModelProfile
from protocol.placement.resources import Links, NodeResources
from protocol.placement.result import Placement

DEFAULT_HEADROOM_FRACTION = 0.10
"""Share of each device's free memory left for the runtime (CUDA context, allocator
fragmentation, activation buffers) and never given to weights or KV cache."""
DEFAULT_HYSTERESIS_FRACTION = 0.10
"""A new placement must be this much faster than the running one to replace it:
reloading weights costs minutes, a 10 % faster token is worth it, 2 % is noise."""
DEFAULT_COMPUTE_EFFICIENCY = 0.02
"""Fraction of a device's peak FLOP/s a batch-1 decode reaches.  Decode is bound by
memory bandwidth, not arithmetic: a 7B fp16 model on an RTX 4090 (82 TFLOP/s fp32
peak, 1 TB/s) runs about 70 tokens/s, i.e. 14 GFLOP x 70 = 1 TFLOP/s, ~1.2 % of peak;
a CPU gets 2-5 %.  Peak figures are what ``vramancer_node.devices`` publishes."""
CONTEXT_TOKENS_MAX = 1 << 24
"""Longest context a request may reserve KV cache for (16 Mi tokens)."""
NODES_MAX = 256
"""Members one request may place onto; bounds the heuristic's work."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PlacementRequest:
    """Inputs of :func:`protocol.placement.optimiser.place`."""

    profile: ModelProfile
    """The model to place."""
    nodes: tuple[NodeResources, ...]
    """Members that may host stages, distinct by ``node_id``; order does not matter."""
    links: Links = field(default_factory=Links)
    """Measured RTT and bandwidth between nodes; unmeasured pairs use its defaults."""
    context_tokens: int
    """Tokens of KV cache every layer reserves (prompt plus generated)."""
    headroom_fraction: float = DEFAULT_HEADROOM_FRACTION
    """Share of each device's ``free_bytes`` kept back, in [0, 1)."""
    previous: Placement | None = None
    """The running placement of this model, if any (see hysteresis in ``optimiser``)."""
    previous_resident: bool = False
    """True when ``previous`` is loaded, so each device's ``free_bytes`` excludes what
    its previous stage holds; that memory is credited back before solving."""
    hysteresis_fraction: float = DEFAULT_HYSTERESIS_FRACTION
    """Keep ``previous`` unless the new cost is below ``(1 - this) *`` its cost; [0, 1)."""
    compute_efficiency: float = DEFAULT_COMPUTE_EFFICIENCY
    """Fraction of peak throughput a decode reaches, in (0, 1]."""

    def __post_init__(self) -> None:
        if not isinstance(self.profile, ModelProfile):
            raise ValueError("profile must be a ModelProfile")
        if not isinstance(self.nodes, tuple) or len(self.nodes) > NODES_MAX:
            raise ValueError(f"nodes must be a tuple of at most {NODES_MAX} NodeResources")
        if not all(isinstance(node, NodeResources) for node in self.nodes):
            raise ValueError("nodes must hold NodeResources items")
        if len({node.node_id for node in self.nodes}) != len(self.nodes):
            raise ValueError("nodes must have distinct node_id values")
        if not isinstance(self.links, Links):
            raise ValueError("links must be a Links")
        tokens = self.context_tokens
        if isinstance(tokens, bool) or not isinstance(tokens, int):
            raise ValueError(f"context_tokens must be an int, got {tokens!r}")
        if not 0 < tokens <= CONTEXT_TOKENS_MAX:
            raise ValueError(f"context_tokens must be in [1, {CONTEXT_TOKENS_MAX}], got {tokens}")
        _check_fraction("headroom_fraction", self.headroom_fraction, one_allowed=False)
        _check_fraction("hysteresis_fraction", self.hysteresis_fraction, one_allowed=False)
        _check_fraction("compute_efficiency", self.compute_efficiency, one_allowed=True)
        if self.compute_efficiency == 0.0:
            raise ValueError("compute_efficiency must be in (0, 1], got 0.0")
        if self.previous is not None and not isinstance(self.previous, Placement):
            raise ValueError("previous must be a Placement or None")
        if not isinstance(self.previous_resident, bool):
            raise ValueError("previous_resident must be a bool")


def _check_fraction(name: str, value: float, *, one_allowed: bool) -> None:
    """Raise unless ``value`` is a number in [0, 1) (or [0, 1] if ``one_allowed``)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    in_range = number and value >= 0.0 and (value <= 1.0 if one_allowed else value < 1.0)
    if not (in_range and math.isfinite(value)):
        bracket = "]" if one_allowed else ")"
        raise ValueError(f"{name} must be a number in [0, 1{bracket}, got {value!r}")
