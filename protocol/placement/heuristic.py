"""Heuristic search above :data:`~protocol.placement.exact.EXACT_DEVICES_MAX` devices.

Theory of operation
-------------------
Decode latency never improves by adding stages (compute is a sum, not a maximum, at
batch 1), so good placements use few devices: fast ones, big enough, well linked.
The heuristic builds candidate device orders ("chains") three ways and polishes the
best with local search; every order is costed exactly by ``cost.evaluate`` (the best
layer split of that order), so only the order and the device subset are heuristic.

1. *Seeds.*
   - Nearest-neighbour chains: from each of up to :data:`STARTS_MAX` start devices
     (the fastest and the largest), repeatedly append the device reached by the
     cheapest activation hop.
   - Speed-first and memory-first chains: all devices sorted by seconds per layer, or
     by usable memory; the first ``k`` of them are then re-ordered by nearest
     neighbour from the first.
   - The roomiest chain, for fragmented clusters: the device holding the most layers
     beside the embedding first, the one holding the most beside the head last, and
     the largest others between them (hop-ordered) until the layers fit.
   Every prefix of every chain is costed; the :data:`POLISHED_MAX` best distinct
   feasible prefixes go to step 2.
2. *Local search* (best improvement, at most :data:`ROUNDS_MAX` rounds): drop a
   stage, replace a stage's device by an unused one, insert an unused device, swap two
   stages, move one stage elsewhere.  A move is taken only if it lowers the cost by
   more than :data:`IMPROVEMENT_S_MIN`, so the search ends.
3. *Exact neighbourhoods*: the best chain's devices plus the unused devices nearest
   to it, or fastest, or largest, up to 8 in all, are re-solved by the exact search;
   an improvement is polished by step 2 again, at most
   :data:`NEIGHBOURHOOD_ROUNDS_MAX` times.  This is what finds placements that route
   through a small, well-linked relay device, which single moves cannot reach.

Work is about ``STARTS_MAX * n^2`` for the seeds, ``rounds * (k * n + k^2)`` cost
evaluations for the local search (``k`` stages, ``n`` devices), capped at
:data:`EVALUATIONS_MAX`, and a few 8-device exact solves (~20 ms each): about 0.1 s
at 64 nodes in CPython (``benchmarks/placement.py``).  It is not guaranteed to find
a feasible placement when one exists only through a pathological arrangement of a
fragmented cluster; the benchmark reports how far from the exact optimum (at 8
devices) and from a lower bound (above) it lands.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from protocol.placement.cost import (
    ROLE_FIRST,
    ROLE_LAST,
    ROLE_MIDDLE,
    Problem,
    decode_s,
    evaluate,
    restrict,
)
from protocol.placement.exact import EXACT_DEVICES_MAX, solve_exact

STARTS_MAX = 16
"""Start devices of nearest-neighbour chains (half fastest, half largest)."""
POLISHED_MAX = 3
"""Best seeds handed to the local search."""
ROUNDS_MAX = 64
"""Local-search rounds per seed."""
NEIGHBOURHOOD_ROUNDS_MAX = 4
"""Rounds of exact re-optimisation over neighbourhoods of the best placement."""
EVALUATIONS_MAX = 50_000
"""Order costings one local search may spend (each is O(stages))."""
IMPROVEMENT_S_MIN = 1e-12
"""Smallest cost decrease (seconds per token) a local-search move must achieve."""

Solution = tuple[tuple[int, ...], tuple[int, ...]]
Scored = tuple[float, tuple[int, ...], tuple[int, ...]]


def solve_heuristic(problem: Problem) -> Solution | None:
    """A good placement of ``problem``, or ``None`` when the heuristic finds none."""
    if not problem.slots:
        return None
    seeds = _best_prefixes(problem, _chains(problem))
    best: Scored | None = None
    for seed in seeds:
        polished = _local_search(problem, seed)
        if best is None or polished[0] < best[0]:
            best = polished
    if best is None:
        return None
    best = _exact_neighbourhoods(problem, best)
    return best[1], best[2]


def _chains(problem: Problem) -> Iterator[tuple[int, ...]]:
    slots = problem.slots
    everyone = range(len(slots))
    by_speed = sorted(everyone, key=lambda i: (slots[i].layer_s, i))
    by_memory = sorted(everyone, key=lambda i: (-slots[i].capacity[ROLE_MIDDLE], i))
    half = max(1, STARTS_MAX // 2)
    starts = list(dict.fromkeys([*by_speed[:half], *by_memory[:half]]))
    for start in starts:
        yield _nearest_neighbour_chain(problem, start, everyone)
    for ranking in (by_speed, by_memory):
        for size in range(1, len(ranking) + 1):
            # A chain over the first `size` devices of the ranking, hop-ordered.
            yield _nearest_neighbour_chain(problem, ranking[0], ranking[:size])
    yield _roomiest_chain(problem, by_memory)


def _roomiest_chain(problem: Problem, by_memory: Sequence[int]) -> tuple[int, ...]:
    slots = problem.slots
    first = min(by_memory, key=lambda i: (-slots[i].capacity[ROLE_FIRST], i))
    others = [index for index in by_memory if index != first]
    if not others:
        return (first,)
    last = min(others, key=lambda i: (-slots[i].capacity[ROLE_LAST], i))
    held = slots[first].capacity[ROLE_FIRST] + slots[last].capacity[ROLE_LAST]
    middle: list[int] = []
    for index in others:
        if held >= problem.num_layers:
            break
        if index != last:
            middle.append(index)
            held += slots[index].capacity[ROLE_MIDDLE]
    ordered = _nearest_neighbour_chain(problem, first, [first, *middle])
    return (*ordered, last)


def _nearest_neighbour_chain(
    problem: Problem, start: int, members: Sequence[int]
) -> tuple[int, ...]:
    hop = problem.hop_s
    chain = [start]
    left = [index for index in members if index != start]
    while left:
        here = hop[chain[-1]]
        nearest = min(left, key=lambda i: (here[i], i))
        chain.append(nearest)
        left.remove(nearest)
    return tuple(chain)


def _best_prefixes(problem: Problem, chains: Iterator[tuple[int, ...]]) -> list[Scored]:
    found: dict[tuple[int, ...], Scored] = {}
    for chain in chains:
        for size in range(1, min(len(chain), problem.num_layers) + 1):
            prefix = chain[:size]
            if prefix in found:
                continue
            scored = evaluate(problem, prefix)
            if scored is not None:
                found[prefix] = (scored[0], prefix, scored[1])
    return sorted(found.values())[:POLISHED_MAX]


def _neighbours(sequence: tuple[int, ...], unused: Sequence[int]) -> Iterator[tuple[int, ...]]:
    stages = len(sequence)
    for position in range(stages):
        head, tail = sequence[:position], sequence[position + 1 :]
        if stages > 1:
            yield head + tail
        for device in unused:
            yield (*head, device, *tail)
    for position in range(stages + 1):
        for device in unused:
            yield (*sequence[:position], device, *sequence[position:])
    for a in range(stages):
        for b in range(a + 1, stages):
            swapped = list(sequence)
            swapped[a], swapped[b] = swapped[b], swapped[a]
            yield tuple(swapped)
    for a in range(stages):
        rest = sequence[:a] + sequence[a + 1 :]
        for b in range(stages):
            if b != a:
                yield (*rest[:b], sequence[a], *rest[b:])


def _local_search(problem: Problem, seed: Scored) -> Scored:
    best = seed
    everyone = range(len(problem.slots))
    evaluations_left = EVALUATIONS_MAX
    for _ in range(ROUNDS_MAX):
        in_use = set(best[1])
        unused = [index for index in everyone if index not in in_use]
        round_best = best
        for candidate in _neighbours(best[1], unused):
            evaluations_left -= 1
            if evaluations_left < 0:
                break
            scored = evaluate(problem, candidate)
            if scored is not None and scored[0] < round_best[0] - IMPROVEMENT_S_MIN:
                round_best = (scored[0], candidate, scored[1])
        if round_best is best:
            break
        best = round_best
    return best


def _exact_neighbourhoods(problem: Problem, best: Scored) -> Scored:
    """Re-solve exactly over the best chain's devices plus a few others, while it helps."""
    slots = problem.slots
    for _ in range(NEIGHBOURHOOD_ROUNDS_MAX):
        chain = best[1]
        room = EXACT_DEVICES_MAX - len(chain)
        if room <= 0:
            break
        in_chain = set(chain)
        unused = [index for index in range(len(slots)) if index not in in_chain]
        hop = problem.hop_s
        rankings = (
            sorted(unused, key=lambda u: (min(hop[c][u] + hop[u][c] for c in chain), u)),
            sorted(unused, key=lambda u: (slots[u].layer_s, u)),
            sorted(unused, key=lambda u: (-slots[u].capacity[ROLE_MIDDLE], u)),
        )
        improved = False
        for ranking in rankings:
            kept = sorted([*chain, *ranking[:room]])
            found = solve_exact(restrict(problem, kept))
            if found is None:
                continue
            sequence = tuple(kept[i] for i in found[0])
            cost = decode_s(problem, sequence, found[1])
            if cost < best[0] - IMPROVEMENT_S_MIN:
                best, improved = (cost, sequence, found[1]), True
        if not improved:
            break
        best = _local_search(problem, best)
    return best
