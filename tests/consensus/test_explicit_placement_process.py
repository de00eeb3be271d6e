"""Two real daemons on 127.0.0.1: explicit stages committed through the log from the
CLI (``--stages`` and ``--split even``), seen with the same epoch on both nodes, and
each bad request refused with its own 400 / 403 / 409 while the nodes keep serving."""

from __future__ import annotations

import json
from typing import Any

from tests.cluster.kit import (
    TINY_LLAMA,
    Daemons,
    cli_json,
    config_only_model,
    founding_token,
    wait_until,
)
from tests.conftest import run_cli
from tests.consensus.test_consensus_process import (
    CONVERGE_S,
    HUGE_LLAMA,
    agreed_leader,
    cluster,
)

__all__ = ["cluster"]  # the fixture, re-used
LAYERS = TINY_LLAMA["num_hidden_layers"]


def layout(placement: dict[str, Any]) -> list[tuple[str, int, int]]:
    return [
        (s["node_id"], s["first_layer"], s["last_layer_exclusive"]) for s in placement["stages"]
    ]


def test_explicit_stages_are_committed_everywhere_and_bad_ones_refused(cluster: Daemons) -> None:
    cluster.start("a")
    token = founding_token(cluster.procs["a"])
    cluster.start("b", "--peer", cluster.address["a"], "--token", token)
    a, b = cluster.ids["a"], cluster.ids["b"]

    def ready() -> bool:
        views = [cluster.consensus(n) for n in ("a", "b")]
        peers = cluster.api("a", "/v1/cluster/peers")["members"]
        alive = sum(1 for m in peers if m["status"] == "alive") == 2
        members = all(sorted(v["members"]) == sorted([a, b]) for v in views)
        return alive and members and agreed_leader(cluster, ["a", "b"]) is not None

    wait_until(ready, CONVERGE_S, "two committed members, both alive, one leader")
    tiny = config_only_model(cluster.root, "tiny-llama", TINY_LLAMA)
    common = ("--model", str(tiny), "--context", "256", "--dtype", "fp32")

    # Stages named by member name, layers inclusive: committed as epoch 1, "explicit".
    first = cli_json(cluster.root / "a", "placement", "propose", *common, "--stages", "a:0-3,b:4-5")
    assert first["epoch"] == 1 and first["method"] == "explicit"
    assert layout(first) == [(a, 0, 4), (b, 4, LAYERS)]
    assert all(s["memory_bytes"] > 0 for s in first["stages"]) and first["tokens_per_s"] > 0
    first.pop("schema")
    wait_until(
        lambda: all(cluster.placements(n) == [first] for n in ("a", "b")),
        CONVERGE_S,
        "the explicit placement on both nodes",
    )
    # An even split over the live members (this node first), by id prefix the same.
    even = cli_json(cluster.root / "a", "placement", "propose", *common, "--split", "even")
    assert even["epoch"] == 2 and layout(even) == [(a, 0, 3), (b, 3, LAYERS)]
    again = cli_json(
        cluster.root / "a", "placement", "propose", *common, "--stages", f"{a[:6]}:0-2,{b}/0:3-5"
    )
    assert again["epoch"] == 2 and again["log_index"] == even["log_index"]  # nothing new
    wait_until(
        lambda: [p["epoch"] for p in cluster.placements("b")] == [2],
        CONVERGE_S,
        "epoch 2 on the follower",
    )

    # Bad requests: each its own status and message; nothing is committed.
    def stages(*items: tuple[str, int, int, int]) -> list[dict[str, Any]]:
        keys = ("node_id", "device_index", "first_layer", "last_layer_exclusive")
        return [dict(zip(keys, item, strict=True)) for item in items]

    good = stages((a, 0, 0, 3), (b, 0, 3, LAYERS))
    base = {"model": str(tiny), "context_tokens": 256, "dtype": "fp32"}
    huge = config_only_model(cluster.root, "huge-llama", HUGE_LLAMA)
    huge_split = stages((a, 0, 0, 200), (b, 0, 200, HUGE_LLAMA["num_hidden_layers"]))
    for node, body, code, message in (
        ("a", {**base, "stages": "a:0-5"}, 400, "stages must be a list"),
        ("a", {**base, "stages": stages((a, 0, 0, 3), (b, 0, 4, LAYERS))}, 400,
         "stages[1] must start at layer 3"),
        ("a", {**base, "stages": stages((a, 0, 0, 3), (b, 0, 3, 5))}, 400,
         "the model has 6 layers"),
        ("a", {**base, "stages": stages((a, 0, 0, 3), (a, 0, 3, LAYERS))}, 400,
         "one stage per device"),
        ("a", {**base, "stages": stages((a, 0, 0, 3), ("nobody", 0, 3, LAYERS))}, 400,
         "nobody is not an admitted member"),
        ("a", {**base, "stages": good, "force": "yes"}, 400, "force must be true or false"),
        ("a", {**base, "force": True}, 400, "force applies to explicit stages only"),
        ("a", {**base, "stages": stages((a, 0, 0, 3), (b, 3, 3, LAYERS))}, 409, "no device 3"),
        ("a", {**base, "model": str(huge), "dtype": "bf16", "stages": huge_split}, 409,
         "short"),
        ("b", {**base, "stages": good}, 403, "admin"),
    ):  # fmt: skip
        response = cluster.post(node, "/v1/placement", json.dumps(body).encode())
        error = response.json().get("error", "")
        assert response.status_code == code and message in error, (message, response.text)
    assert [p["epoch"] for p in cluster.placements("a")] == [2]

    # The CLI reports a bad --stages itself; force commits a stage that does not fit.
    bad = run_cli(
        "vramancer", "--state-dir", str(cluster.root / "a"), "placement", "propose", *common,
        "--stages", "a:0-3,zed:4-5",
    )  # fmt: skip
    assert bad.returncode == 1 and "'zed' is not a member" in bad.stderr, bad.stderr
    forced = cluster.post(
        "a",
        "/v1/placement",
        json.dumps({**base, "model": str(huge), "dtype": "bf16", "stages": huge_split,
                    "force": True}).encode(),
    )  # fmt: skip
    assert forced.status_code == 200, forced.text
    assert forced.json()["model"] == "huge-llama" and forced.json()["method"] == "explicit"
    wait_until(
        lambda: [p["model"] for p in cluster.placements("b")] == ["huge-llama", "tiny-llama"],
        CONVERGE_S,
        "the forced placement on the follower",
    )
    assert cluster.api("b", "/v1/consensus")["schema"] == "vramancer.consensus.v1"
