"""A lower bound on the decode time of any placement, to judge the heuristic by.

Theory of operation
-------------------
A placement on one device costs its compute; the bound takes the cheapest device that
can hold the whole model alone.

A placement on ``k >= 2`` devices is a cycle: ``k - 1`` activation hops and the
sampled token's return, so every device in it has exactly one incoming hop.  Relax
the cycle to "each chosen device pays the cheapest hop any other device could send
it" (``in_s``), relax memory to the middle-stage capacity (no embedding or head), and
drop the one-layer-per-stage rule.  What remains is a knapsack solved exactly by a
dynamic programme over devices in speed order and layers placed::

    bound = min over sets S, |S| >= 2, of
            sum over S of in_s(i)  +  cheapest split of the layers over S
            +  the cheapest head

Every real split placement costs at least its relaxation, so the minimum of the two
cases bounds every placement from below.  ``inf`` when nothing can hold the model.
"""

from __future__ import annotations

import math

from protocol.placement.cost import ROLE_BOTH, ROLE_MIDDLE, Problem

_SETS_MIN_SIZES = 3
"""DP states per layer count: 0, 1 or at least 2 devices chosen."""


def lower_bound_s(problem: Problem) -> float:
    """Seconds per token no placement of ``problem`` can beat."""
    slots = problem.slots
    layers = problem.num_layers
    if not slots:
        return math.inf
    alone = min(
        (
            layers * slot.layer_s + slot.head_s
            for slot in slots
            if slot.capacity[ROLE_BOTH] >= layers
        ),
        default=math.inf,
    )
    count = len(slots)
    if count < 2:
        return alone
    in_s = [
        min(min(problem.hop_s[j][i], problem.return_s[j][i]) for j in range(count) if j != i)
        for i in range(count)
    ]
    # best[l][c]: least cost placing l layers on c (capped at 2) chosen devices.
    best = [[math.inf] * _SETS_MIN_SIZES for _ in range(layers + 1)]
    best[0][0] = 0.0
    for i in sorted(range(count), key=lambda s: slots[s].layer_s):
        slot = slots[i]
        capacity = min(slot.capacity[ROLE_MIDDLE], layers)
        grown = [row[:] for row in best]
        for placed in range(layers):
            for chosen in range(_SETS_MIN_SIZES):
                base = best[placed][chosen]
                if base == math.inf:
                    continue
                more = min(chosen + 1, _SETS_MIN_SIZES - 1)
                for taken in range(1, min(capacity, layers - placed) + 1):
                    cost = base + in_s[i] + taken * slot.layer_s
                    if cost < grown[placed + taken][more]:
                        grown[placed + taken][more] = cost
        best = grown
    split = best[layers][_SETS_MIN_SIZES - 1] + min(slot.head_s for slot in slots)
    return min(alone, split)
