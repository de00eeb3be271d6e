"""Hysteresis: the running placement stays unless the gain passes the configured fraction."""

from __future__ import annotations

from typing import Any

import pytest

from protocol.placement import (
    DeviceResources,
    NodeResources,
    Placement,
    PlacementInfeasible,
    PlacementRequest,
    Stage,
    place,
)
from tests.placement.helpers import tiny_profile

CONTEXT = 16
PROFILE = tiny_profile(4)
EVERYTHING = 4 * PROFILE.layer_bytes(CONTEXT) + PROFILE.embedding_bytes + PROFILE.head_bytes
ON_B = Placement(
    stages=(Stage(node_id="b", device_index=0, first_layer=0, last_layer_exclusive=4),)
)


def nodes(a_tflops: float, b_free: int = EVERYTHING) -> tuple[NodeResources, ...]:
    return (
        NodeResources(node_id="a", devices=(DeviceResources(0, "cuda", EVERYTHING, a_tflops),)),
        NodeResources(node_id="b", devices=(DeviceResources(0, "cuda", b_free, 1.0),)),
    )


def request(a_tflops: float, **fields: Any) -> PlacementRequest:
    fields.setdefault("previous", ON_B)
    fields.setdefault("hysteresis_fraction", 0.1)
    b_free = fields.pop("b_free", EVERYTHING)
    return PlacementRequest(
        profile=PROFILE,
        nodes=nodes(a_tflops, b_free),
        context_tokens=CONTEXT,
        headroom_fraction=0.0,
        **fields,
    )


# A one-stage placement costs 1 / tflops: a device x times faster is 1 - 1/x cheaper.
@pytest.mark.parametrize(
    ("a_tflops", "moves"),
    [
        (1.0, False),  # no gain
        (1.05, False),  # 4.8 % faster: below the 10 % threshold
        (1 / 0.9 * (1 - 1e-9), False),  # just below the threshold
        (1 / 0.9 * (1 + 1e-9), True),  # just above
        (1.2, True),  # 16.7 % faster
    ],
)
def test_the_running_placement_moves_only_past_the_threshold(a_tflops: float, moves: bool) -> None:
    placement = place(request(a_tflops))
    assert placement.stages[0].node_id == ("a" if moves else "b")
    assert placement.method == ("exact" if moves else "previous")


def test_a_kept_placement_is_re_costed_under_todays_snapshot() -> None:
    kept = place(request(1.05))
    fresh = place(request(0.5, previous=None))  # a is slower: b wins on its own merit
    assert fresh.stages == ON_B.stages and fresh.method == "exact"
    assert kept.decode_s_per_token == pytest.approx(fresh.decode_s_per_token)
    assert kept.stage_memory and kept.stage_memory[0].total_bytes == EVERYTHING


def test_zero_hysteresis_still_keeps_an_equally_good_placement() -> None:
    placement = place(request(1.0, hysteresis_fraction=0.0))
    assert placement.method == "previous" and placement.stages == ON_B.stages
    assert place(request(1.0 + 1e-9, hysteresis_fraction=0.0)).stages[0].node_id == "a"


def test_a_previous_placement_that_no_longer_fits_is_replaced() -> None:
    placement = place(request(1.0, b_free=EVERYTHING - 1))
    assert placement.stages[0].node_id == "a" and placement.method == "exact"


def test_a_previous_placement_on_a_departed_node_is_replaced() -> None:
    req = request(1.0)
    only_a = PlacementRequest(
        profile=PROFILE,
        nodes=req.nodes[:1],
        context_tokens=CONTEXT,
        headroom_fraction=0.0,
        previous=ON_B,
    )
    assert place(only_a).stages[0].node_id == "a"


def test_a_previous_placement_of_another_layer_count_is_replaced() -> None:
    three = Placement(
        stages=(Stage(node_id="b", device_index=0, first_layer=0, last_layer_exclusive=3),)
    )
    assert place(request(1.0, previous=three)).stages[0].node_id == "a"


def test_a_resident_placement_gets_its_own_memory_credited_back() -> None:
    # b reports no free memory: the running model holds it all.
    only_b = PlacementRequest(
        profile=PROFILE, nodes=nodes(1.0, 0)[1:], context_tokens=CONTEXT, headroom_fraction=0.0
    )
    with pytest.raises(PlacementInfeasible):
        place(only_b)
    resident = place(request(1.0, b_free=0, previous_resident=True))
    assert resident.method == "previous" and resident.stages == ON_B.stages
    assert resident.stage_memory[0].usable_bytes == EVERYTHING
    # Not resident: b's memory is really taken, so the model moves to a.
    moved = place(request(1.0, b_free=0))
    assert moved.stages[0].node_id == "a"


def test_the_credit_uses_the_recorded_stage_memory_when_present() -> None:
    recorded = place(request(0.5, previous=None))  # on b, with its stage memory
    assert recorded.stages == ON_B.stages and recorded.stage_memory
    kept = place(request(1.0, b_free=0, previous=recorded, previous_resident=True))
    assert kept.method == "previous"
    assert kept.stage_memory[0].usable_bytes == recorded.stage_memory[0].total_bytes


def test_placing_again_with_the_result_as_previous_changes_nothing() -> None:
    first = place(request(1.2, previous=None))
    again = place(request(1.2, previous=first))
    assert again.stages == first.stages and again.method == "previous"
    assert again.decode_s_per_token == pytest.approx(first.decode_s_per_token)
