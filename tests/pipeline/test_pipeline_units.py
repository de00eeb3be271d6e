"""Pieces of the pipeline shell without sockets: tensor bodies, the session table's
bound and LRU eviction, placements as JSON, even splits and local epochs."""

from __future__ import annotations

import pytest
import torch

from protocol.pipeline import ActivationHeader, BodyLengthError, MessageKind
from protocol.placement import Placement, Stage
from vramancer_node.pipeline import (
    LocalPlacementSource,
    even_placement,
    placement_from_json,
    placement_to_json,
)
from vramancer_node.pipeline.sessions import SessionTable, StageSession
from vramancer_node.pipeline.tensors import body_tensor, dtype_tag, tensor_body
from vramancer_node.runtime import KVCache


def header_for(tensor: torch.Tensor) -> ActivationHeader:
    return ActivationHeader(
        kind=MessageKind.DECODE,
        epoch=1,
        session_id=bytes(16),
        step=0,
        first_position=0,
        dtype=dtype_tag(tensor),
        shape=tuple(tensor.shape),
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_tensor_bodies_round_trip_bit_for_bit(dtype: torch.dtype) -> None:
    tensor = torch.randn(1, 1, 24, generator=torch.Generator().manual_seed(3)).to(dtype)
    body = bytearray(tensor_body(tensor))
    assert len(body) == tensor.numel() * tensor.element_size()
    assert torch.equal(body_tensor(header_for(tensor), body), tensor)


def test_a_body_of_the_wrong_length_is_refused() -> None:
    tensor = torch.zeros(1, 1, 8)
    body = bytearray(tensor_body(tensor))
    with pytest.raises(BodyLengthError):
        body_tensor(header_for(tensor), body[:-1])


def test_only_allow_listed_dtypes_cross_the_wire() -> None:
    with pytest.raises(ValueError, match="cannot cross the wire"):
        dtype_tag(torch.zeros(1, dtype=torch.float64))


def session(number: int) -> StageSession:
    cache = KVCache(
        num_layers=1, batch_size=1, num_kv_heads=1, head_dim=4, max_tokens=8,
        dtype=torch.float32, device=torch.device("cpu"),
    )  # fmt: skip
    return StageSession(session_id=bytes([number]) * 16, model_id="m", epoch=1, cache=cache)


def test_the_session_table_evicts_the_least_recently_used_beyond_its_bound() -> None:
    table = SessionTable(sessions_max=2)
    first, second, third = session(1), session(2), session(3)
    table.open(first)
    table.open(second)
    table.touch(first)  # second is now the least recently used
    table.open(third)
    assert (len(table), table.counters.evicted_total) == (2, 1)
    assert second.evicted and not first.evicted and not third.evicted
    assert table.cache_bytes() == first.cache.nbytes + third.cache.nbytes  # type: ignore[union-attr]
    table.close(first)
    table.drop_model("m")
    assert len(table) == 0 and table.counters.evicted_total == 2
    with pytest.raises(ValueError):
        SessionTable(sessions_max=0)


def test_even_placement_splits_layers_in_node_order() -> None:
    placement = even_placement(["a", "b", "c"], 7)
    assert [(s.node_id, s.first_layer, s.last_layer_exclusive) for s in placement.stages] == [
        ("a", 0, 3), ("b", 3, 5), ("c", 5, 7),
    ]  # fmt: skip
    assert len(even_placement(["a", "b", "c"], 2).stages) == 2
    with pytest.raises(ValueError):
        even_placement([], 4)


def test_placement_json_round_trips_and_names_what_is_wrong() -> None:
    placement = even_placement(["a", "b"], 4)
    document = placement_to_json("m", 3, placement)
    assert placement_from_json(document).stages == placement.stages
    with pytest.raises(ValueError, match="non-empty list"):
        placement_from_json({"stages": []})
    with pytest.raises(ValueError, match="lacks 'first_layer'"):
        placement_from_json({"stages": [{"node_id": "a", "last_layer_exclusive": 2}]})
    with pytest.raises(ValueError, match=r"stages\[1\]"):
        placement_from_json(
            {"stages": [
                {"node_id": "a", "first_layer": 0, "last_layer_exclusive": 2},
                {"node_id": "b", "first_layer": 2, "last_layer_exclusive": 2},
            ]}
        )  # fmt: skip


def test_local_epochs_rise_above_everything_known() -> None:
    seen = {"m": 7}
    source = LocalPlacementSource(lambda: [], lambda model: seen.get(model, 0))
    placement = Placement(stages=(Stage(node_id="a", device_index=0, first_layer=0,
                                        last_layer_exclusive=2),))  # fmt: skip
    assert source.set_placement("m", placement)[0] == 8
    assert source.set_placement("m", placement)[0] == 9
    assert source.set_placement("m", placement, 42)[0] == 42
    assert source.set_placement("other", placement)[0] == 1
    assert source.committed_placement("m") == (42, placement)
    with pytest.raises(ValueError):
        source.set_placement("m", placement, 0)
