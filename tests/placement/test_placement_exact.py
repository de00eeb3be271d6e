"""The exact search against brute force on hypothesis-generated small clusters.

The reference (``helpers.brute_force``) enumerates every order of every subset of
devices and every contiguous split of the layers, costing and sizing each from first
principles; the optimiser must find the same optimum, never exceed memory, and raise
exactly when the reference finds nothing.
"""

from __future__ import annotations

import math

from hypothesis import event, given, settings
from hypothesis import strategies as st

from protocol.placement import (
    DeviceResources,
    Links,
    NodeResources,
    PlacementInfeasible,
    PlacementRequest,
    place,
)
from protocol.placement.bounds import lower_bound_s
from protocol.placement.cost import build_problem
from tests.placement.helpers import brute_force, check_placement, tiny_profile

DEVICES_MAX = 5
"""Brute force over 5 devices and 6 layers: at most 325 orders x 10 splits."""
TFLOPS = (0.002, 0.0005, 0.01, 0.05, 0.0)
"""Slow enough that compute (0.1-20 ms per layer of the tiny model) competes with hops."""
RTT_S = (None, 0.0, 0.0002, 0.002, 0.02)
BANDWIDTH = (None, 1e5, 1e7, 1e9)
SEEDED = settings(derandomize=True, database=None, deadline=None, max_examples=400)


@st.composite
def small_requests(draw: st.DrawFn) -> PlacementRequest:
    layers = draw(st.integers(1, 6))
    profile = tiny_profile(layers, tie=draw(st.booleans()))
    context = draw(st.sampled_from((1, 64, 512)))
    layer = profile.layer_bytes(context)
    # Free memory around whole layers plus the parts a first or last stage holds, so
    # that capacities (and infeasibility) vary a layer at a time.
    fixed = (
        0,
        profile.embedding_bytes,
        profile.head_bytes,
        profile.fixed_bytes(first=True, last=True),
    )
    node_count = draw(st.integers(1, 4))
    nodes: list[NodeResources] = []
    devices_left = DEVICES_MAX
    for number in range(node_count):
        count = draw(st.integers(1, max(1, min(2, devices_left - (node_count - number - 1)))))
        devices_left -= count
        devices = tuple(
            DeviceResources(
                index,
                "cuda",
                max(
                    0,
                    draw(st.integers(1, layers)) * layer
                    + draw(st.sampled_from(fixed))
                    + draw(st.integers(-layer // 2, layer // 2)),
                ),
                draw(st.sampled_from(TFLOPS)),
            )
            for index in range(count)
        )
        nodes.append(NodeResources(node_id=f"n{number}", devices=devices))
    rtt: dict[tuple[str, str], float] = {}
    bandwidth: dict[tuple[str, str], float] = {}
    ids = [node.node_id for node in nodes]
    for a in ids:
        for b in ids:
            if a == b:
                continue
            rtt_s = draw(st.sampled_from(RTT_S))
            if rtt_s is not None:
                rtt[(a, b)] = rtt_s
            rate = draw(st.sampled_from(BANDWIDTH))
            if rate is not None:
                bandwidth[(a, b)] = rate
    return PlacementRequest(
        profile=profile,
        nodes=tuple(draw(st.permutations(nodes))),
        links=Links(rtt_s=rtt, bandwidth_bytes_per_s=bandwidth),
        context_tokens=context,
        headroom_fraction=draw(st.sampled_from((0.0, 0.1, 0.25))),
        compute_efficiency=draw(st.sampled_from((0.02, 1.0))),
    )


@SEEDED
@given(small_requests())
def test_the_exact_search_matches_brute_force(request: PlacementRequest) -> None:
    expected = brute_force(request)
    if expected is None:
        event("infeasible")
        try:
            found = place(request)
        except PlacementInfeasible:
            return
        raise AssertionError(f"brute force found nothing, the optimiser found {found}")
    placement = place(request)
    assert placement.method == "exact"
    event(f"stages={len(placement.stages)}")
    assert math.isclose(placement.decode_s_per_token, expected, rel_tol=1e-9), (
        f"optimiser {placement.decode_s_per_token} vs brute force {expected}: {placement}"
    )
    assert math.isclose(
        placement.compute_s_per_token + placement.transfer_s_per_token,
        placement.decode_s_per_token,
        rel_tol=1e-12,
    )
    check_placement(request, placement)
    bound = lower_bound_s(build_problem(request, {}))
    assert bound <= expected * (1 + 1e-9), f"lower bound {bound} above the optimum {expected}"


@SEEDED
@given(small_requests())
def test_placing_again_with_the_result_as_previous_keeps_it(request: PlacementRequest) -> None:
    try:
        first = place(request)
    except PlacementInfeasible:
        return
    again = place(
        PlacementRequest(
            profile=request.profile,
            nodes=request.nodes,
            links=request.links,
            context_tokens=request.context_tokens,
            headroom_fraction=request.headroom_fraction,
            compute_efficiency=request.compute_efficiency,
            previous=first,
            hysteresis_fraction=0.0,
        )
    )
    assert again.stages == first.stages
    assert again.method == "previous"
