"""Table tests of place(): which devices, which splits, what it costs, when it cannot."""

from __future__ import annotations

import math
from typing import Any

import pytest

from protocol.placement import (
    DeviceResources,
    Links,
    ModelProfile,
    NodeResources,
    PlacementInfeasible,
    PlacementRequest,
    Stage,
    place,
)
from protocol.placement.cost import SAMPLED_TOKEN_BYTES
from protocol.placement.errors import GIB
from protocol.placement.resources import (
    DEFAULT_BANDWIDTH_BYTES_PER_S,
    DEFAULT_RTT_S,
    INTRA_NODE_BANDWIDTH_BYTES_PER_S,
    INTRA_NODE_RTT_S,
)
from tests.placement.helpers import MISTRAL_7B_CONFIG, check_placement, tiny_profile

CONTEXT = 16
PROFILE = tiny_profile(4)
LAYER = PROFILE.layer_bytes(CONTEXT)
EMBEDDING = PROFILE.embedding_bytes
HEAD = PROFILE.head_bytes
EVERYTHING = 4 * LAYER + EMBEDDING + HEAD
FAST = Links.symmetric
"""Shorthand: symmetric links."""


def node(node_id: str, *devices: tuple[int, float]) -> NodeResources:
    """A node with ``(free_bytes, tflops)`` devices numbered from 0, all CUDA."""
    return NodeResources(
        node_id=node_id,
        devices=tuple(
            DeviceResources(index, "cuda", free, tflops)
            for index, (free, tflops) in enumerate(devices)
        ),
    )


def request(*nodes: NodeResources, **fields: Any) -> PlacementRequest:
    fields.setdefault("profile", PROFILE)
    fields.setdefault("context_tokens", CONTEXT)
    fields.setdefault("headroom_fraction", 0.0)
    return PlacementRequest(nodes=nodes, **fields)


def layer_s(tflops: float, profile: ModelProfile = PROFILE, efficiency: float = 0.02) -> float:
    return profile.layer_flops_per_token(CONTEXT) / (tflops * 1e12 * efficiency)


def head_s(tflops: float) -> float:
    return PROFILE.head_flops_per_token / (tflops * 1e12 * 0.02)


def test_one_device_that_holds_everything_gets_one_stage() -> None:
    req = request(node("a", (EVERYTHING, 1.0)))
    placement = place(req)
    assert placement.stages == (
        Stage(node_id="a", device_index=0, first_layer=0, last_layer_exclusive=4),
    )
    assert placement.method == "exact"
    assert placement.transfer_s_per_token == 0.0
    assert placement.compute_s_per_token == pytest.approx(4 * layer_s(1.0) + head_s(1.0))
    (memory,) = placement.stage_memory
    assert memory.weight_bytes == 4 * PROFILE.layer_weight_bytes + EMBEDDING + HEAD
    assert memory.kv_cache_bytes == 4 * CONTEXT * PROFILE.kv_bytes_per_token_per_layer
    assert memory.total_bytes == memory.usable_bytes == EVERYTHING
    check_placement(req, placement)


def test_one_byte_less_and_the_model_must_split() -> None:
    half = 2 * LAYER + HEAD + EMBEDDING
    req = request(node("a", (EVERYTHING - 1, 1.0)), node("b", (half, 1.0)))
    placement = place(req)
    assert len(placement.stages) == 2
    check_placement(req, placement)


@pytest.mark.parametrize(("fast_a", "fast_b"), [("a", "b"), ("b", "c"), ("a", "c")])
def test_the_fast_link_pair_is_preferred(fast_a: str, fast_b: str) -> None:
    # Each node holds at most three layers with the embedding or the head: two needed.
    free = 3 * LAYER + max(EMBEDDING, HEAD)
    slow = {pair: 0.010 for pair in (("a", "b"), ("a", "c"), ("b", "c"))}
    slow[(fast_a, fast_b)] = 0.0001
    links = Links.symmetric(slow, {(fast_a, fast_b): 1.25e9})
    req = request(
        node("a", (free, 1.0)), node("b", (free, 1.0)), node("c", (free, 1.0)), links=links
    )
    placement = place(req)
    assert {stage.node_id for stage in placement.stages} == {fast_a, fast_b}
    check_placement(req, placement)


def test_the_faster_device_takes_as_many_layers_as_it_can() -> None:
    # One node: a small fast GPU and a big slow one; the hop between them is cheap.
    small_fast = 2 * LAYER + HEAD  # two layers and the embedding or the head
    req = request(node("n", (small_fast, 0.1), (10 * EVERYTHING, 0.001)))
    placement = place(req)
    by_device = {stage.device_index: stage.layers for stage in placement.stages}
    assert by_device == {0: 2, 1: 2}
    check_placement(req, placement)
    # Cost: both stages' compute, the head where it lands, an intra-node hop each way.
    last = placement.stages[-1].device_index
    tflops = {0: 0.1, 1: 0.001}
    compute = 2 * layer_s(0.1) + 2 * layer_s(0.001) + head_s(tflops[last])
    hop = INTRA_NODE_RTT_S + PROFILE.activation_bytes_per_token / INTRA_NODE_BANDWIDTH_BYTES_PER_S
    back = INTRA_NODE_RTT_S + SAMPLED_TOKEN_BYTES / INTRA_NODE_BANDWIDTH_BYTES_PER_S
    assert placement.compute_s_per_token == pytest.approx(compute)
    assert placement.transfer_s_per_token == pytest.approx(hop + back)


def test_the_sampled_token_returns_over_the_reverse_link() -> None:
    free = 2 * LAYER + max(EMBEDDING, HEAD)
    links = Links(
        rtt_s={("a", "b"): 0.001, ("b", "a"): 0.003},
        bandwidth_bytes_per_s={("a", "b"): 1e6, ("b", "a"): 2e6},
    )
    req = request(node("a", (free, 1.0)), node("b", (free, 1.0)), links=links)
    placement = place(req)
    # a -> b -> a costs 4.130 ms, b -> a -> b 4.068 ms: the cycle decides the order.
    assert [stage.node_id for stage in placement.stages] == ["b", "a"]
    forward = 0.003 + PROFILE.activation_bytes_per_token / 2e6
    back = 0.001 + SAMPLED_TOKEN_BYTES / 1e6
    assert placement.transfer_s_per_token == pytest.approx(forward + back)


def test_unmeasured_links_cost_the_conservative_defaults() -> None:
    free = 2 * LAYER + max(EMBEDDING, HEAD)
    req = request(node("a", (free, 1.0)), node("b", (free, 1.0)))
    placement = place(req)
    activation = PROFILE.activation_bytes_per_token
    expected = (
        2 * DEFAULT_RTT_S + (activation + SAMPLED_TOKEN_BYTES) / DEFAULT_BANDWIDTH_BYTES_PER_S
    )
    assert placement.transfer_s_per_token == pytest.approx(expected)


def test_devices_too_small_or_without_compute_are_never_used() -> None:
    req = request(
        node("a", (LAYER - 1, 100.0)),  # cannot hold one layer
        node("b", (100 * EVERYTHING, 0.0)),  # cannot compute
        node("c", (EVERYTHING, 0.1)),
    )
    placement = place(req)
    assert [stage.node_id for stage in placement.stages] == ["c"]


def test_ties_go_to_node_id_order_whatever_the_input_order() -> None:
    nodes = [node(name, (EVERYTHING, 1.0)) for name in ("c", "a", "b")]
    first = place(request(*nodes))
    assert first.stages[0].node_id == "a"
    assert place(request(*reversed(nodes))) == first


def test_tied_embeddings_put_a_copy_on_the_last_stage_of_a_split() -> None:
    tied = tiny_profile(4, tie=True)
    layer, embedding = tied.layer_bytes(CONTEXT), tied.embedding_bytes
    alone = 4 * layer + embedding + tied.head_bytes
    req = request(node("a", (alone, 1.0)), profile=tied)
    (memory,) = place(req).stage_memory
    assert memory.weight_bytes == 4 * tied.layer_weight_bytes + embedding + 2 * 64
    # Split over two devices: the last stage needs the matrix again as lm_head.
    free = 2 * layer + embedding + tied.head_bytes
    req = request(node("a", (free, 1.0)), node("b", (free, 1.0)), profile=tied)
    placement = place(req)
    first, last = placement.stage_memory
    assert first.weight_bytes == 2 * tied.layer_weight_bytes + embedding
    assert last.weight_bytes == 2 * tied.layer_weight_bytes + embedding + 2 * 64
    check_placement(req, placement)


def test_headroom_is_kept_back() -> None:
    assert len(place(request(node("a", (EVERYTHING, 1.0)))).stages) == 1
    with pytest.raises(PlacementInfeasible):
        place(request(node("a", (EVERYTHING, 1.0)), headroom_fraction=0.01))
    free = math.ceil(EVERYTHING / 0.75) + 1
    placement = place(request(node("a", (free, 1.0)), headroom_fraction=0.25))
    assert placement.stage_memory[0].usable_bytes == math.floor(free * 0.75)


def test_a_longer_context_needs_more_memory_per_layer() -> None:
    nodes = (node("a", (EVERYTHING, 1.0)), node("b", (EVERYTHING, 1.0)))
    assert len(place(request(*nodes)).stages) == 1
    longer = place(request(*nodes, context_tokens=CONTEXT * 4))
    assert len(longer.stages) == 2


def test_more_stages_are_never_used_than_memory_needs() -> None:
    # Decode latency adds up stage by stage: splitting only adds hops.
    nodes = [node(name, (EVERYTHING, 1.0)) for name in "abcdef"]
    links = Links.symmetric(dict.fromkeys([("a", "b"), ("b", "c")], 0.0))
    assert len(place(request(*nodes, links=links)).stages) == 1


def test_the_model_that_does_not_fit_names_the_shortfall_in_gib() -> None:
    mistral = ModelProfile.from_hf_config(MISTRAL_7B_CONFIG, "bfloat16")
    devices = (node("a", (8 * GIB, 30.0)), node("b", (4 * GIB, 30.0)))
    req = request(*devices, profile=mistral, context_tokens=4096, headroom_fraction=0.1)
    with pytest.raises(PlacementInfeasible) as caught:
        place(req)
    error = caught.value
    weights = mistral.weight_bytes  # split, untied: nothing held twice
    kv = 32 * 4096 * mistral.kv_bytes_per_token_per_layer
    available = math.floor(8 * GIB * 0.9) + math.floor(4 * GIB * 0.9)
    assert (error.needed_bytes, error.available_bytes) == (weights + kv, available)
    assert error.shortfall_bytes == weights + kv - available
    message = str(error)
    assert message.startswith("model does not fit: mistral (32 layers, bfloat16) needs 13.99 GiB")
    assert "(weights 13.49 GiB + KV cache 0.50 GiB for 4096 tokens)" in message
    assert "the 2 device(s) able to compute offer 10.80 GiB after 10% headroom" in message
    assert message.endswith(": 3.19 GiB short")


@pytest.mark.parametrize("count", [8, 12])  # exact search, heuristic
def test_enough_memory_in_pieces_too_small_for_the_embedding_is_named_as_such(count: int) -> None:
    # Each device holds one layer, none a layer and the embedding (or the head).
    crumbs = [node(f"n{i:02d}", (LAYER, 1.0)) for i in range(count)]
    with pytest.raises(PlacementInfeasible) as caught:
        place(request(*crumbs))
    assert caught.value.shortfall_bytes == 0
    assert "does not split into whole layers per device" in str(caught.value)
    layer_gib = f"{LAYER / GIB:.6f} GiB"
    assert f"one layer with its KV cache needs {layer_gib}, the first stage" in str(caught.value)


def test_no_members_at_all() -> None:
    with pytest.raises(PlacementInfeasible, match=r"the 0 device\(s\) able to compute offer 0\.00"):
        place(request())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("context_tokens", 0),
        ("context_tokens", 1 << 25),
        ("context_tokens", 1.5),
        ("headroom_fraction", 1.0),
        ("headroom_fraction", -0.1),
        ("hysteresis_fraction", float("nan")),
        ("compute_efficiency", 0.0),
        ("compute_efficiency", 1.5),
        ("previous_resident", 1),
    ],
)
def test_bad_requests_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        request(node("a", (EVERYTHING, 1.0)), **{field: value})


def test_duplicate_nodes_are_refused() -> None:
    with pytest.raises(ValueError, match="distinct node_id"):
        request(node("a", (1, 1.0)), node("a", (1, 1.0)))


@pytest.mark.parametrize(
    ("devices", "fragment"),
    [
        (((0, "cuda", 1, 1.0), (0, "cuda", 1, 1.0)), "distinct"),
        (((0, "tpu", 1, 1.0),), "kind"),
        (((0, "cuda", -1, 1.0),), "free_bytes"),
        (((0, "cuda", 1, float("inf")),), "tflops"),
        (((-1, "cuda", 1, 1.0),), "device_index"),
    ],
)
def test_bad_devices_are_refused(devices: tuple[tuple[Any, ...], ...], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        NodeResources(node_id="a", devices=devices)  # type: ignore[arg-type]


def test_links_fall_back_to_the_reverse_direction_then_to_defaults() -> None:
    links = Links(rtt_s={("a", "b"): 0.002}, bandwidth_bytes_per_s={("b", "a"): 5e8})
    assert links.rtt_s_between("a", "b") == links.rtt_s_between("b", "a") == 0.002
    assert links.bandwidth_between("a", "b") == 5e8
    assert links.rtt_s_between("a", "c") == DEFAULT_RTT_S
    assert links.bandwidth_between("c", "a") == DEFAULT_BANDWIDTH_BYTES_PER_S
    assert links.rtt_s_between("a", "a") == INTRA_NODE_RTT_S
    with pytest.raises(ValueError, match="rtt_s"):
        Links(rtt_s={("a", "b"): -1.0})
    with pytest.raises(ValueError, match="bandwidth_bytes_per_s"):
        Links(bandwidth_bytes_per_s={("a", "b"): 0.0})
