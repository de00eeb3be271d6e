"""Exact search for up to :data:`EXACT_DEVICES_MAX` candidate devices.

Theory of operation
-------------------
A placement is a sequence of distinct devices (an order over a subset) plus a layer
count per stage.  By ``cost.py`` its cost splits into two independent parts:

* the *compute* part depends only on the device set, which device is first and which
  is last (those roles change the capacities), and is solved exactly by
  :func:`~protocol.placement.cost.allocate`;
* the *hop* part depends only on the order: a path through the set from the first
  device to the last, plus the token's return.

So the optimum over all orders and all layer cuts is::

    min over (set S, first f, last t):  compute(S, f, t) + path(S, f, t) + return(t, f)

where ``path(S, f, t)``, the cheapest Hamiltonian path from ``f`` to ``t`` through
``S``, comes from a Held-Karp dynamic programme over subsets, one per first device:
``n^2 2^n`` steps rather than the ``n! * C(layers, n)`` of enumerating orders and
cuts (``tests/placement`` checks the two agree).  At 8 devices that is a few tens of
thousands of steps.

Ties keep the first candidate met: first devices, sets and last devices are visited in
node-id order and only a strictly lower cost replaces the best so far.
"""

from __future__ import annotations

import math

from protocol.placement.cost import ROLE_FIRST, Problem, allocate, compute_s

EXACT_DEVICES_MAX = 8
"""Candidate devices up to which the search is exact; above, ``heuristic.py``."""

Solution = tuple[tuple[int, ...], tuple[int, ...]]
"""``(slot sequence, layer counts)``."""


def solve_exact(problem: Problem, *, devices_max: int = EXACT_DEVICES_MAX) -> Solution | None:
    """The cheapest placement of ``problem``, or ``None`` when none fits.

    Refuses more than ``devices_max`` candidates: the work doubles with each device
    (tests raise the limit a little to check the heuristic against it).
    """
    count = len(problem.slots)
    if count > devices_max:
        raise ValueError(f"the exact search takes at most {devices_max} devices, got {count}")
    best_cost = math.inf
    best: Solution | None = None
    for first in range(count):
        if problem.slots[first].capacity[ROLE_FIRST] < 1:
            continue
        path_s, parent = _paths_from(problem, first)
        for mask in range(1, 1 << count):
            if not mask >> first & 1:
                continue
            for last in range(count):
                if not mask >> last & 1 or path_s[mask][last] == math.inf:
                    continue
                if last == first and mask != 1 << first:
                    continue
                sequence = _unwind(parent, mask, last)
                counts = allocate(problem, sequence)
                if counts is None:
                    continue
                cost = path_s[mask][last] + compute_s(problem, sequence, counts)
                if len(sequence) > 1:
                    cost += problem.return_s[last][first]
                if cost < best_cost:
                    best_cost, best = cost, (sequence, counts)
    return best


def _paths_from(problem: Problem, first: int) -> tuple[list[list[float]], list[list[int]]]:
    """Held-Karp: cheapest hop path from ``first`` through each subset to each end."""
    count = len(problem.slots)
    hop = problem.hop_s
    path_s = [[math.inf] * count for _ in range(1 << count)]
    parent = [[-1] * count for _ in range(1 << count)]
    path_s[1 << first][first] = 0.0
    # Stages hold at least one layer each: never more stages than layers.
    stages_max = min(count, problem.num_layers)
    for mask in range(1 << count):
        if not mask >> first & 1 or mask.bit_count() >= stages_max:
            continue
        row = path_s[mask]
        for end in range(count):
            base = row[end]
            if base == math.inf:
                continue
            for nxt in range(count):
                if mask >> nxt & 1:
                    continue
                cost = base + hop[end][nxt]
                grown = mask | 1 << nxt
                if cost < path_s[grown][nxt]:
                    path_s[grown][nxt] = cost
                    parent[grown][nxt] = end
    return path_s, parent


def _unwind(parent: list[list[int]], mask: int, last: int) -> tuple[int, ...]:
    sequence = [last]
    while True:
        previous = parent[mask][sequence[-1]]
        if previous < 0:
            break
        mask &= ~(1 << sequence[-1])
        sequence.append(previous)
    return tuple(reversed(sequence))
