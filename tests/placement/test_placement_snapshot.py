"""Placement inputs from gossiped member records, and a placement made from them."""

from __future__ import annotations

from protocol.membership.record import DeviceInfo, MemberRecord, peer_values
from protocol.placement import (
    DeviceResources,
    ModelProfile,
    PlacementRequest,
    links_from_records,
    nodes_from_records,
    place,
)
from protocol.placement.resources import DEFAULT_BANDWIDTH_BYTES_PER_S
from protocol.placement.snapshot import UNMEASURED_DEVICE_TFLOPS
from tests.placement.helpers import QWEN2_05B_CONFIG

GIB = 1024**3


def record(node_id: str, *devices: DeviceInfo, **fields: object) -> MemberRecord:
    return MemberRecord(
        node_id=node_id,
        addresses=(f"10.0.0.{len(node_id)}:7400",),
        devices=devices,
        **fields,  # type: ignore[arg-type]
    )


def gpu(free_gib: float | None, tflops: float | None, total_gib: float = 24.0) -> DeviceInfo:
    return DeviceInfo(
        kind="cuda",
        name="NVIDIA RTX 4090",
        memory_total_bytes=int(total_gib * GIB),
        memory_free_bytes=None if free_gib is None else int(free_gib * GIB),
        compute_tflops=tflops,
    )


def test_records_become_nodes_with_pessimistic_unknowns() -> None:
    records = [
        record("b", gpu(None, 80.0), gpu(2.0, None)),
        record("a", gpu(8.0, 80.0)),
        record("c", gpu(24.0, 80.0), drain=True),
    ]
    nodes = nodes_from_records(records)
    assert [node.node_id for node in nodes] == ["a", "b"]  # sorted, the draining one left out
    assert nodes[0].devices == (DeviceResources(0, "cuda", 8 * GIB, 80.0),)
    assert nodes[1].devices == (
        DeviceResources(0, "cuda", 0, 80.0),  # free memory unknown: offers nothing
        DeviceResources(1, "cuda", 2 * GIB, UNMEASURED_DEVICE_TFLOPS),
    )


def test_links_come_from_the_measuring_side_in_seconds() -> None:
    records = [
        record(
            "a",
            rtt_ms=peer_values({"b": 2.0}),
            bandwidth_bytes_per_s=peer_values({"b": 1.25e8, "c": 0.0}),
        ),
        record("b", rtt_ms=peer_values({"a": 4.0})),
    ]
    links = links_from_records(records)
    assert links.rtt_s_between("a", "b") == 0.002
    assert links.rtt_s_between("b", "a") == 0.004
    assert links.bandwidth_between("b", "a") == 1.25e8  # borrowed from a -> b
    assert links.bandwidth_between("a", "c") == DEFAULT_BANDWIDTH_BYTES_PER_S  # 0 = unmeasured


def test_a_placement_from_records_uses_the_well_linked_pair() -> None:
    profile = ModelProfile.from_hf_config(QWEN2_05B_CONFIG, "auto")
    records = [
        record(name, gpu(0.8, 40.0), rtt_ms=peer_values(rtt), bandwidth_bytes_per_s=peer_values(bw))
        for name, rtt, bw in (
            ("a", {"b": 0.2, "c": 15.0}, {"b": 1.25e9, "c": 1.25e7}),
            ("b", {"a": 0.2, "c": 15.0}, {"a": 1.25e9, "c": 1.25e7}),
            ("c", {"a": 15.0, "b": 15.0}, {"a": 1.25e7, "b": 1.25e7}),
        )
    ]
    request = PlacementRequest(
        profile=profile,
        nodes=nodes_from_records(records),
        links=links_from_records(records),
        context_tokens=2048,
    )
    placement = place(request)
    assert {stage.node_id for stage in placement.stages} == {"a", "b"}
    assert placement.num_layers == 24
    assert all(m.total_bytes <= m.usable_bytes for m in placement.stage_memory)
