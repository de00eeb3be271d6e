"""Three real daemons on 127.0.0.1: one Raft leader, admissions committed on every
node, a placement proposed from a follower and visible everywhere with the same
epoch, the leader SIGKILLed and replaced with the placement intact (re-planned onto
the survivors if the dead node held layers), a restarted node that reloads its log
before it is ready, and a revoked member refused by the others."""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.kit import (
    TINY_LLAMA,
    Daemons,
    cli_json,
    config_only_model,
    founding_token,
    wait_until,
)
from tests.conftest import run_cli

HUGE_LLAMA = {
    **TINY_LLAMA,
    "hidden_size": 16384,
    "intermediate_size": 53248,
    "num_hidden_layers": 400,
    "num_attention_heads": 128,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
}
CONVERGE_S = 60


@pytest.fixture
def cluster() -> Iterator[Daemons]:
    root = Path(tempfile.mkdtemp(prefix="vrmr-", dir="/tmp"))
    nodes = Daemons(root)
    try:
        yield nodes
    finally:
        nodes.stop_all()
        shutil.rmtree(root, ignore_errors=True)


def agreed_leader(cluster: Daemons, names: list[str]) -> str | None:
    views = [cluster.consensus(n) for n in names]
    leaders = {v["leader"] for v in views}
    if len(leaders) != 1 or None in leaders:
        return None
    leader = leaders.pop()
    roles = sorted(v["role"] for v in views)
    return leader if roles.count("leader") == 1 else None


def test_three_daemons_agree_on_members_placement_and_revocation(cluster: Daemons) -> None:
    cluster.start("a")
    token = founding_token(cluster.procs["a"])
    for name in ("b", "c"):
        cluster.start(name, "--peer", cluster.address["a"], "--token", token)
    names = ["a", "b", "c"]
    everyone = sorted(cluster.ids.values())

    # Admissions are committed on every node, and the stable members become voters.
    def converged() -> bool:
        views = [cluster.consensus(n) for n in names]
        return all(sorted(v["members"]) == everyone and v["voters"] == everyone for v in views)

    wait_until(converged, CONVERGE_S, "three committed members, all voting")
    wait_until(lambda: agreed_leader(cluster, names) is not None, CONVERGE_S, "one leader")
    leader_id = agreed_leader(cluster, names)
    leader = next(n for n in names if cluster.ids[n] == leader_id)
    shown = run_cli("vramancer", "--state-dir", str(cluster.root / leader), "status")
    assert shown.returncode == 0 and "leader, term" in shown.stdout, shown.stdout
    follower = next(n for n in names if n != leader)

    # A preview plans without committing anything.
    tiny = config_only_model(cluster.root, "tiny-llama", TINY_LLAMA)
    preview = cli_json(
        cluster.root / follower, "placement", "plan", str(tiny),
        "--context", "256", "--dtype", "fp32",
    )  # fmt: skip
    assert preview["changes"] is True and preview["epoch"] == 1 and preview["log_index"] == 0
    assert all(cluster.placements(n) == [] for n in names)

    # A placement proposed on a follower is planned by the leader and committed.
    proposed = cli_json(
        cluster.root / follower, "placement", "apply", str(tiny),
        "--context", "256", "--dtype", "fp32",
    )  # fmt: skip
    assert proposed["model"] == "tiny-llama" and proposed["epoch"] == 1
    assert proposed["stages"][0]["first_layer"] == 0
    assert proposed["stages"][-1]["last_layer_exclusive"] == TINY_LLAMA["num_hidden_layers"]
    assert {s["node_id"] for s in proposed["stages"]} <= set(everyone)
    assert proposed.pop("schema") == "vramancer.consensus.placement.v1"
    wait_until(
        lambda: all(cluster.placements(n) == [proposed] for n in names),
        CONVERGE_S,
        "the same placement epoch on every node",
    )
    shown = cli_json(cluster.root / leader, "placement")
    assert shown["schema"] == "vramancer.consensus.placements.v1" and shown["placements"] == [
        proposed
    ]
    table = run_cli("vramancer", "--state-dir", str(cluster.root / leader), "placement")
    assert table.returncode == 0 and "tiny-llama" in table.stdout and "MEMORY" in table.stdout

    # Bad requests get a clear refusal and the node keeps serving.
    for path, content, code, message in (
        ("/v1/placement", b"{not json", 400, "not JSON"),
        ("/v1/placement", b'{"model": "/nonexistent/m"}', 400, "cannot read"),
        ("/v1/placement", json.dumps({"model": str(tiny), "context_tokens": 0}).encode(), 400,
         "context_tokens"),
        ("/v1/revocations", b'{"node_id": "nobody"}', 403, "admin"),
    ):  # fmt: skip
        response = cluster.post(follower if follower != "a" else "b", path, content)
        assert response.status_code == code and message in response.json()["error"], response.text
    unknown = cluster.post("a", "/v1/revocations", b'{"node_id": "nobody"}')
    assert unknown.status_code == 404 and "not a committed member" in unknown.json()["error"]
    assert cluster.api(follower, "/v1/consensus")["schema"] == "vramancer.consensus.v1"

    # A model that fits nowhere is refused with the optimiser's shortfall.
    huge = config_only_model(cluster.root, "huge-llama", HUGE_LLAMA)
    refused = run_cli(
        "vramancer", "--state-dir", str(cluster.root / follower), "placement", "propose",
        "--model", str(huge), "--dtype", "bf16",
    )  # fmt: skip
    assert refused.returncode == 1
    assert "does not fit" in refused.stderr and "short" in refused.stderr, refused.stderr

    # SIGKILL the leader: the two others elect a new one; the placement survives, and
    # if the dead node held layers they are re-planned onto the survivors (epoch 2).
    cluster.stop(leader, signal.SIGKILL)
    survivors = [n for n in names if n != leader]
    wait_until(
        lambda: agreed_leader(cluster, survivors) not in (None, leader_id),
        CONVERGE_S,
        "a new leader among the survivors",
    )
    held = leader_id in {s["node_id"] for s in proposed["stages"]}
    expected_epoch = 2 if held else 1
    survivor_ids = {cluster.ids[n] for n in survivors}

    def survived() -> bool:
        views = [cluster.placements(n) for n in survivors]
        if views[0] != views[1] or len(views[0]) != 1:
            return False
        placement = views[0][0]
        on_survivors = {s["node_id"] for s in placement["stages"]} <= survivor_ids
        return placement["epoch"] == expected_epoch and on_survivors

    wait_until(survived, CONVERGE_S, f"placement epoch {expected_epoch} on the survivors")
    current = cluster.placements(survivors[0])
    if not held:
        assert current == [proposed]
    shown_after = cli_json(cluster.root / survivors[0], "placement", "show")
    assert shown_after["placements"] == current  # `placement show` after the leader died

    # Restart it: its log is reloaded before it reports ready.
    cluster.start(leader, "--peer", cluster.address[survivors[0]])
    assert cluster.placements(leader)[0]["epoch"] >= 1
    assert cluster.consensus(leader)["applied_index"] >= proposed["log_index"]
    wait_until(
        lambda: cluster.placements(leader) == cluster.placements(survivors[0]),
        CONVERGE_S,
        "the restarted node caught up",
    )

    # The returning member may change the voters (one change at a time, maybe an
    # election): revoke once all three agree on a leader again.
    wait_until(lambda: agreed_leader(cluster, names) is not None, CONVERGE_S, "one leader again")

    # Revoke a non-admin member from the founder (an admin; it forwards to the leader).
    victim = "c"
    revoked = cli_json(cluster.root / "a", "revoke", cluster.ids[victim], "--reason", "test")
    serial = revoked["serial"]
    wait_until(
        lambda: all(serial in cluster.consensus(n)["revoked_serials"] for n in names),
        CONVERGE_S,
        "the revocation applied on every node",
    )
    others = [n for n in names if n != victim]
    wait_until(
        lambda: all(cluster.ids[victim] not in cluster.consensus(n)["members"] for n in others),
        CONVERGE_S,
        "the revoked node gone from the members",
    )
    cluster.stop(victim)
    cluster.start(victim, "--peer", cluster.address["a"], "--peer", cluster.address["b"])
    wait_until(
        lambda: any(
            cluster.status(n)["handshakes"].get("certificate_revoked", 0) > 0 for n in others
        ),
        CONVERGE_S,
        "the revoked node refused by the others",
    )
    kinds = [
        r["kind"] for r in cli_json(cluster.root / "b", "audit", "tail", "-n", "50")["records"]
    ]
    for kind in ("member_committed", "placement_committed", "certificate_revoked"):
        assert kind in kinds
