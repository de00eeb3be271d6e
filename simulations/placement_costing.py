"""One yardstick for every method: the memory limits and the cost model of ``place``.

Theory of operation
-------------------
A split (``(node_id, layers)`` in pipeline order) is *feasible* when every stage fits
its device: ``layers x (layer weights + KV cache for the context) + the embedding on
the first stage + the head on the last <= floor(free x (1 - headroom))``.  This module
checks that from the model profile's own sizes, and also asks
``protocol.placement.cost.fits`` the same question; the two must agree or the run
stops (a disagreement is a bug in one of them, not a result).

The cost of a feasible split is ``protocol.placement.cost.decode_s`` on the problem
``cost.build_problem`` makes of the request: exactly the objective ``place``
minimises, so a baseline is never charged for something ours is not.  Predicted
tokens/s is ``1 / decode_s``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from protocol.placement import PlacementInfeasible, PlacementRequest, place
from protocol.placement.cost import Problem, build_problem, decode_s, fits
from simulations.placement_baselines import Split

DEVICE_INDEX = 0
COST_REL_TOLERANCE = 1e-9
"""Two computations of one split's cost may differ by float rounding only."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Outcome:
    """What one method chose for one instance."""

    split: Split | None
    """``None`` when the method found nothing (ours: ``PlacementInfeasible``)."""
    feasible: bool
    decode_s: float | None
    """Seconds per token by the shared cost model; ``None`` when infeasible."""
    note: str = ""

    @property
    def tokens_per_s(self) -> float | None:
        return None if self.decode_s is None else 1.0 / self.decode_s


def problem_of(request: PlacementRequest) -> Problem:
    """The cost model's view of ``request`` (no resident previous placement)."""
    return build_problem(request, {})


def split_fits(request: PlacementRequest, split: Split) -> bool:
    """Every stage within its device's usable memory, from the profile's sizes."""
    model, context = request.profile, request.context_tokens
    free = {node.node_id: node.devices[DEVICE_INDEX].free_bytes for node in request.nodes}
    keep = 1.0 - request.headroom_fraction
    stages = len(split)
    for position, (node_id, layers) in enumerate(split):
        need = layers * model.layer_bytes(context) + model.fixed_bytes(
            first=position == 0, last=position == stages - 1
        )
        if need > math.floor(free[node_id] * keep):
            return False
    return True


def evaluate(request: PlacementRequest, problem: Problem, split: Split, note: str = "") -> Outcome:
    """Feasibility and cost of ``split`` by the shared yardstick."""
    feasible = split_fits(request, split)
    index = {slot.node_id: position for position, slot in enumerate(problem.slots)}
    if any(node_id not in index for node_id, _ in split):
        # cost.py dropped the device: it cannot hold one layer (or cannot compute).
        if feasible:
            raise AssertionError(f"{split} fits by the profile but uses a dropped device")
        return Outcome(split=split, feasible=False, decode_s=None, note=note)
    sequence = tuple(index[node_id] for node_id, _ in split)
    counts = tuple(layers for _, layers in split)
    if fits(problem, sequence, counts) != feasible:
        raise AssertionError(f"memory checks disagree on {split}: cost.fits says {not feasible}")
    cost = decode_s(problem, sequence, counts) if feasible else None
    return Outcome(split=split, feasible=feasible, decode_s=cost, note=note)


def ours(request: PlacementRequest, problem: Problem) -> Outcome:
    """``place(request)``, re-checked and re-costed by the same yardstick."""
    try:
        placement = place(request)
    except PlacementInfeasible as exc:
        return Outcome(split=None, feasible=False, decode_s=None, note=str(exc))
    split = tuple((stage.node_id, stage.layers) for stage in placement.stages)
    outcome = evaluate(request, problem, split, note=placement.method)
    if not outcome.feasible:
        raise AssertionError(f"place() returned a split that does not fit: {split}")
    assert outcome.decode_s is not None
    if not math.isclose(outcome.decode_s, placement.decode_s_per_token, rel_tol=COST_REL_TOLERANCE):
        raise AssertionError(
            f"place() reports {placement.decode_s_per_token} s/token, the cost model "
            f"{outcome.decode_s} for {split}"
        )
    return outcome
