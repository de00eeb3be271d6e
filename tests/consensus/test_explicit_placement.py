"""Explicit placements, the pure checks: a good split becomes the next epoch with
method "explicit"; each bad input is its own error (400 shape / membership, 409 a
node down, draining, without the device, or too small unless forced)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.client import app
from cli.placement import even_stages, parse_stage_spec, resolve_node
from protocol.control import ControlState, Revoke, decode_command, encode_command
from protocol.membership import DeviceInfo, MemberRecord
from tests.consensus.test_control_state import Log, admission
from vramancer_node.consensus.explicit import (
    StageDoesNotFit,
    StageUnavailable,
    explicit_epoch,
    parse_stages,
)
from vramancer_node.consensus.placing import PlacementRequestError, PlaceRequest, to_placement

GIB = 1 << 30
CONFIG = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 6,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 256,
    "max_position_embeddings": 512,
}
REQUEST = PlaceRequest(
    model_id="tiny", config_json=json.dumps(CONFIG), context_tokens=256, dtype="fp32"
)


def record(node_id: str, free_bytes: int | None = 8 * GIB, *, drain: bool = False) -> MemberRecord:
    device = DeviceInfo(
        kind="cpu", name="cpu", memory_total_bytes=16 * GIB, memory_free_bytes=free_bytes,
        compute_tflops=0.5,
    )  # fmt: skip
    return MemberRecord(node_id=node_id, addresses=("127.0.0.1:1",), devices=(device,), drain=drain)


def cluster(count: int = 3) -> tuple[Log, list[str]]:
    log = Log()
    ids = []
    for serial in range(2, 2 + count):
        node_id, admit = admission(serial)
        log.apply(admit)
        ids.append(node_id)
    return log, ids


def split(ids: list[str], *cuts: int) -> list[dict[str, Any]]:
    bounds = [0, *cuts, CONFIG["num_hidden_layers"]]
    return [
        {"node_id": n, "device_index": 0, "first_layer": a, "last_layer_exclusive": b}
        for n, a, b in zip(ids, bounds, bounds[1:], strict=False)
    ]


def epoch_for(state: ControlState, stages: object, up: dict[str, MemberRecord], **kw: Any) -> Any:
    return explicit_epoch(REQUEST, parse_stages(stages), control=state, up=up, **kw)


def test_a_good_split_is_the_next_epoch_recorded_as_explicit() -> None:
    log, ids = cluster()
    up = {n: record(n) for n in ids}
    epoch = epoch_for(log.state, split(ids, 2, 4), up)
    assert epoch.epoch == 1 and epoch.method == "explicit"
    assert [(s.node_id, s.first_layer, s.last_layer_exclusive) for s in epoch.stages] == [
        (ids[0], 0, 2), (ids[1], 2, 4), (ids[2], 4, 6),
    ]  # fmt: skip
    assert all(s.memory_bytes > 0 for s in epoch.stages) and epoch.decode_ns_per_token > 0
    assert epoch.model_config == REQUEST.config_json and epoch.context_tokens == 256
    assert decode_command(encode_command(epoch)) == epoch
    assert to_placement(epoch).method == "explicit"
    log.apply(epoch)
    assert log.state.placement("tiny").placement == epoch  # type: ignore[union-attr]
    # The same explicit split again commits nothing; another one is epoch 2.
    assert epoch_for(log.state, split(ids, 2, 4), up) is None
    assert epoch_for(log.state, split(ids, 3, 5), up).epoch == 2


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ("all", "must be a list"),
        ([], "must be a list"),
        (["x"], "must be an object"),
        ([{"node_id": "n", "first_layer": 0}], "missing ['last_layer_exclusive']"),
        ([{"node_id": "n", "first_layer": 0, "last_layer_exclusive": 6, "gpu": 1}], "unknown"),
        ([{"node_id": "", "first_layer": 0, "last_layer_exclusive": 6}], "node id"),
        ([{"node_id": "n", "first_layer": True, "last_layer_exclusive": 6}], "ints >= 0"),
        ([{"node_id": "n", "first_layer": 0, "last_layer_exclusive": "6"}], "ints >= 0"),
        ([{"node_id": "n", "first_layer": 3, "last_layer_exclusive": 3}], "at least one layer"),
        ([{"node_id": "n", "device_index": 5000, "first_layer": 0, "last_layer_exclusive": 6}],
         "device_index"),
    ],
)  # fmt: skip
def test_malformed_stages_are_refused(stages: object, message: str) -> None:
    with pytest.raises(PlacementRequestError, match=re.escape(message)):
        parse_stages(stages)


def test_layout_and_membership_errors_are_bad_requests() -> None:
    log, ids = cluster()
    up = {n: record(n) for n in ids}
    gap = split(ids, 2, 4)
    gap[1]["first_layer"] = 3
    short = split(ids, 2, 4)
    short[2]["last_layer_exclusive"] = 5
    twice = split([ids[0], ids[0]], 3)
    stranger = split([ids[0], "stranger"], 3)
    for stages, message in (
        (gap, "stages[1] must start at layer 2"),
        (short, "end at layer 5 but the model has 6 layers"),
        (twice, "one stage per device"),
        (stranger, "stranger is not an admitted member"),
    ):
        with pytest.raises(PlacementRequestError, match=message.replace("[", r"\[")):
            epoch_for(log.state, stages, up)
    log.apply(Revoke(serial=4, reason="gone"))  # ids[2]
    with pytest.raises(PlacementRequestError, match="not an admitted member"):
        epoch_for(log.state, split(ids, 2, 4), up)
    whole = [{"node_id": ids[0], "first_layer": 0, "last_layer_exclusive": 6}]
    assert epoch_for(log.state, whole, up).stages[0].node_id == ids[0]


def test_nodes_down_draining_or_without_the_device_are_conflicts() -> None:
    log, ids = cluster()
    stages = split(ids, 2, 4)
    down = {n: record(n) for n in ids[:2]}
    with pytest.raises(StageUnavailable, match=f"stages\\[2\\]: {ids[2]} is not up"):
        epoch_for(log.state, stages, down)
    draining = {**down, ids[2]: record(ids[2], drain=True)}
    with pytest.raises(StageUnavailable, match="draining"):
        epoch_for(log.state, stages, draining)
    stages[1]["device_index"] = 1
    with pytest.raises(StageUnavailable, match="has 1 device\\(s\\), no device 1"):
        epoch_for(log.state, stages, {n: record(n) for n in ids})


def test_a_stage_too_big_for_its_device_is_refused_with_the_shortfall_unless_forced() -> None:
    log, ids = cluster()
    up = {n: record(n) for n in ids}
    up[ids[1]] = record(ids[1], free_bytes=1000)
    with pytest.raises(StageDoesNotFit, match="stage 1 does not fit: layers 2-3 need") as info:
        epoch_for(log.state, split(ids, 2, 4), up)
    assert "short" in str(info.value) and info.value.shortfall_bytes > 0
    assert '"force": true' in str(info.value)
    forced = epoch_for(log.state, split(ids, 2, 4), up, force=True)
    assert forced.epoch == 1 and forced.stages[1].memory_bytes > 1000
    up[ids[1]] = record(ids[1], free_bytes=None)
    with pytest.raises(StageDoesNotFit, match="does not publish its free memory"):
        epoch_for(log.state, split(ids, 2, 4), up)


def test_cli_stage_specs_even_splits_and_node_names() -> None:
    assert parse_stage_spec("a:0-3, b/1:4-5") == [("a", 0, 0, 4), ("b", 1, 4, 6)]
    for bad in ("a:0-", "a:3-1", "0-3", "a:x-3", "a/-1:0-3", ":0-3", "a:0:3"):
        with pytest.raises(ValueError):
            parse_stage_spec(bad)
    assert even_stages(["x", "y", "z"], 7) == [
        {"node_id": "x", "device_index": 0, "first_layer": 0, "last_layer_exclusive": 3},
        {"node_id": "y", "device_index": 0, "first_layer": 3, "last_layer_exclusive": 5},
        {"node_id": "z", "device_index": 0, "first_layer": 5, "last_layer_exclusive": 7},
    ]
    assert [s["node_id"] for s in even_stages(["x", "y", "z"], 2)] == ["x", "y"]
    with pytest.raises(ValueError):
        even_stages([], 4)
    members = [{"node_id": "abc123", "name": "gpu"}, {"node_id": "abd456", "name": "pi"}]
    assert resolve_node("gpu", members) == "abc123"
    assert resolve_node("abd", members) == "abd456"
    assert resolve_node("abc123", members) == "abc123"
    with pytest.raises(ValueError, match="matches several"):
        resolve_node("ab", members)
    with pytest.raises(ValueError, match="not a member"):
        resolve_node("zzz", members)


def test_placement_propose_help_renders() -> None:
    result = CliRunner().invoke(app, ["placement", "propose", "--help"])
    assert result.exit_code == 0, result.output
    assert "--stages" in result.output and "--split" in result.output
