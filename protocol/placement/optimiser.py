"""``place(request)``: the placement optimiser's one entry point.

Theory of operation
-------------------
Placement is a pure function of (model profile, member snapshot, previous placement)
(DESIGN.md section 6).  ``place`` runs four steps:

1. *Credit.*  When the previous placement is resident, the memory each of its stages
   holds is added back to that device's free memory: the snapshot counts it as used,
   yet it is exactly what a re-placement may reuse.  The credit is the stage's
   recorded ``stage_memory`` (what was allocated) or, for a placement without it, the
   stage's size under the current profile.
2. *Problem.*  ``cost.build_problem`` turns devices into candidate slots (headroom
   applied, devices too small for a layer or without throughput dropped) and links
   into hop costs.
3. *Search.*  Up to :data:`~protocol.placement.exact.EXACT_DEVICES_MAX` candidates
   the exact search (``exact.py``), above it the heuristic (``heuristic.py``).
4. *Hysteresis.*  If the previous placement still fits (same layer count, every stage
   device still a candidate, every stage within its device's memory), it is re-costed
   under today's snapshot and kept unless the new optimum is cheaper than
   ``previous_cost * (1 - hysteresis_fraction)``.  A kept placement comes back with
   ``method="previous"`` and today's costs and memory.

A model that fits nowhere raises :class:`PlacementInfeasible` whose message names the
memory needed, the memory offered after headroom and the shortfall, in GiB.
"""

from __future__ import annotations

from protocol.placement.cost import (
    ROLE_BOTH,
    ROLE_FIRST,
    ROLE_LAST,
    ROLE_MIDDLE,
    DeviceKey,
    Problem,
    build_problem,
    decode_s,
    fits,
    role_of,
    to_placement,
)
from protocol.placement.errors import PlacementInfeasible, gib
from protocol.placement.exact import EXACT_DEVICES_MAX, solve_exact
from protocol.placement.heuristic import solve_heuristic
from protocol.placement.request import PlacementRequest
from protocol.placement.result import Placement


def place(request: PlacementRequest) -> Placement:
    """The placement of ``request.profile`` that minimises decode time per token.

    Raises :class:`PlacementInfeasible` when no placement fits the offered memory.
    """
    problem = build_problem(request, _resident_credit(request))
    exact = len(problem.slots) <= EXACT_DEVICES_MAX
    solution = solve_exact(problem) if exact else solve_heuristic(problem)
    previous = _previous_solution(problem, request.previous)
    if previous is not None:
        previous_s = decode_s(problem, *previous)
        threshold_s = previous_s * (1.0 - request.hysteresis_fraction)
        if solution is None or decode_s(problem, *solution) >= threshold_s:
            return to_placement(problem, *previous, method="previous")
    if solution is None:
        raise _infeasible(problem, exact=exact)
    return to_placement(problem, *solution, method="exact" if exact else "heuristic")


def _resident_credit(request: PlacementRequest) -> dict[DeviceKey, int]:
    previous = request.previous
    if previous is None or not request.previous_resident:
        return {}
    profile, context = request.profile, request.context_tokens
    credit: dict[DeviceKey, int] = {}
    stages = len(previous.stages)
    for position, stage in enumerate(previous.stages):
        if previous.stage_memory:
            held = previous.stage_memory[position].total_bytes
        else:
            role = role_of(position, stages)
            fixed = profile.fixed_bytes(first=bool(role & 1), last=bool(role & 2))
            held = stage.layers * profile.layer_bytes(context) + fixed
        credit[stage.device] = held
    return credit


def _previous_solution(
    problem: Problem, previous: Placement | None
) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The previous placement as slot indices, if it still fits; else ``None``."""
    if previous is None or previous.num_layers != problem.num_layers:
        return None
    index = {slot.key: position for position, slot in enumerate(problem.slots)}
    sequence = tuple(index.get(stage.device, -1) for stage in previous.stages)
    if -1 in sequence:
        return None
    counts = previous.layer_counts
    return (sequence, counts) if fits(problem, sequence, counts) else None


def _infeasible(problem: Problem, *, exact: bool) -> PlacementInfeasible:
    profile, context = problem.profile, problem.context_tokens
    layers = problem.num_layers
    split = problem.devices_offered > 1
    fixed = profile.fixed_bytes(first=True, last=not split)
    if split:
        fixed += profile.fixed_bytes(first=False, last=True)
    kv_bytes = layers * problem.layer_kv_bytes
    weight_bytes = layers * profile.layer_weight_bytes + fixed
    needed = weight_bytes + kv_bytes
    available = problem.available_bytes
    headroom = f"{problem.headroom_fraction:.0%} headroom"
    offer = (
        f"the {problem.devices_offered} device(s) able to compute offer {gib(available)} "
        f"after {headroom}"
    )
    what = (
        f"{profile.model_type} ({layers} layers, {profile.dtype}) needs {gib(needed)} "
        f"(weights {gib(weight_bytes)} + KV cache {gib(kv_bytes)} for {context} tokens)"
    )
    if needed > available:
        message = f"{what} but {offer}: {gib(needed - available)} short"
    elif exact or _cannot_split(problem):
        message = (
            f"{what} and {offer}, but it does not split into whole layers per device: "
            f"one layer with its KV cache needs {gib(problem.layer_bytes)}, the first stage "
            f"also holds {gib(profile.fixed_bytes(first=True, last=False))} and the last "
            f"{gib(profile.fixed_bytes(first=False, last=True))}, the largest device "
            f"offers {gib(problem.largest_usable_bytes)}"
        )
    else:
        message = f"{what} and {offer}, but the heuristic search found no placement that fits"
    return PlacementInfeasible(
        "model does not fit: " + message, needed_bytes=needed, available_bytes=available
    )


def _cannot_split(problem: Problem) -> bool:
    """Whether simple counting already proves that no placement fits."""
    slots = problem.slots
    if any(slot.capacity[ROLE_BOTH] >= problem.num_layers for slot in slots):
        return False
    no_first = all(slot.capacity[ROLE_FIRST] < 1 for slot in slots)
    no_last = all(slot.capacity[ROLE_LAST] < 1 for slot in slots)
    layers_held = sum(slot.capacity[ROLE_MIDDLE] for slot in slots)
    return no_first or no_last or layers_held < problem.num_layers
