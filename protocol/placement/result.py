"""What the optimiser hands back: ordered stages, their memory and the decode cost.

A :class:`Placement` is what the Raft log commits as a placement epoch: the stages in
pipeline order, each a contiguous, non-empty layer range on one device.  The first
stage also holds the embedding, the last the final norm and ``lm_head`` (with tied
embeddings a copy of the embedding matrix; see ``profile.py``).  The stage ranges
cover ``[0, num_layers)`` without gaps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from protocol.wire import NODE_ID_CHARS_MAX

PlacementMethod = Literal["exact", "heuristic", "previous", "explicit"]
"""How a placement was chosen: the exact search, the heuristic, hysteresis kept the
previous one, or an operator gave the stages explicitly (never the optimiser's own
answer; committed placements record it).  Append only: the names are in the log."""
PLACEMENT_METHODS: tuple[PlacementMethod, ...] = ("exact", "heuristic", "previous", "explicit")
STAGES_MAX = 1024
"""More stages than any cluster has devices; bounds a placement from the log."""


@dataclass(frozen=True, kw_only=True, slots=True, order=True)
class Stage:
    """One pipeline stage: layers ``[first_layer, last_layer_exclusive)`` on a device."""

    node_id: str
    device_index: int
    first_layer: int
    last_layer_exclusive: int

    def __post_init__(self) -> None:
        if not isinstance(self.node_id, str) or not 0 < len(self.node_id) <= NODE_ID_CHARS_MAX:
            raise ValueError(f"node_id must be a non-empty str of at most {NODE_ID_CHARS_MAX}")
        for name in ("device_index", "first_layer", "last_layer_exclusive"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if self.last_layer_exclusive <= self.first_layer:
            raise ValueError("a stage must hold at least one layer")

    @property
    def layers(self) -> int:
        return self.last_layer_exclusive - self.first_layer

    @property
    def device(self) -> tuple[str, int]:
        """``(node_id, device_index)``."""
        return (self.node_id, self.device_index)


@dataclass(frozen=True, kw_only=True, slots=True)
class StageMemory:
    """Memory one stage needs on its device, and what the device offers."""

    weight_bytes: int
    """Layer weights plus the embedding / head the stage holds."""
    kv_cache_bytes: int
    """KV cache of the stage's layers for the request's context."""
    usable_bytes: int
    """The device's free memory after headroom (at most this much may be used)."""

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.kv_cache_bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class Placement:
    """Ordered stages and what running them costs per decoded token."""

    stages: tuple[Stage, ...]
    """Pipeline order; contiguous layer ranges starting at layer 0."""
    stage_memory: tuple[StageMemory, ...] = ()
    """Memory of each stage, in stage order (empty on a placement built by hand)."""
    decode_s_per_token: float = 0.0
    """``compute_s_per_token + transfer_s_per_token``: the objective."""
    compute_s_per_token: float = 0.0
    """Sum of the stages' compute time per token (layers, and the head on the last)."""
    transfer_s_per_token: float = 0.0
    """Activation hops between consecutive stages plus the sampled token's return."""
    method: PlacementMethod = "exact"

    def __post_init__(self) -> None:
        if not isinstance(self.stages, tuple) or not 0 < len(self.stages) <= STAGES_MAX:
            raise ValueError(f"stages must be a tuple of 1 to {STAGES_MAX} Stage")
        if not all(isinstance(stage, Stage) for stage in self.stages):
            raise ValueError("stages must hold Stage items")
        expected_first = 0
        for index, stage in enumerate(self.stages):
            if stage.first_layer != expected_first:
                raise ValueError(f"stage {index} must start at layer {expected_first}")
            expected_first = stage.last_layer_exclusive
        if len({stage.device for stage in self.stages}) != len(self.stages):
            raise ValueError("a device may hold at most one stage")
        if self.stage_memory and len(self.stage_memory) != len(self.stages):
            raise ValueError("stage_memory must have one entry per stage")
        if self.method not in PLACEMENT_METHODS:
            raise ValueError(f"method must be one of {PLACEMENT_METHODS}")

    @property
    def num_layers(self) -> int:
        """Layers covered: the last stage's end."""
        return self.stages[-1].last_layer_exclusive

    @property
    def layer_counts(self) -> tuple[int, ...]:
        return tuple(stage.layers for stage in self.stages)
