"""Draining a node: the flag file and the request (fast), then three real daemons: the
node holding a stage of a committed placement is drained and the leader commits a new
epoch without it; peers show it draining; undrain clears the flag; a drained node that
restarts comes back drained; a bad request is a 400 and the node keeps serving."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.client import _peer_row
from tests.cluster.kit import (
    TINY_LLAMA,
    Daemons,
    cli_json,
    config_only_model,
    founding_token,
    wait_until,
)
from tests.conftest import run_cli
from vramancer_node.drain import (
    DrainRequestError,
    drain_path,
    parse_drain,
    read_drain,
    write_drain,
)

CONVERGE_S = 90
"""Generous: the suite shares two cores with other work."""

# -- the flag file and the request ------------------------------------------------


def test_the_flag_is_absent_false_then_persisted_both_ways(tmp_path: Path) -> None:
    assert read_drain(tmp_path) is False
    write_drain(tmp_path, True)
    assert read_drain(tmp_path) is True
    assert os.stat(drain_path(tmp_path)).st_mode & 0o777 == 0o600
    assert json.loads(drain_path(tmp_path).read_text()) == {
        "schema": "vramancer.drain.v1",
        "drain": True,
    }
    write_drain(tmp_path, False)
    assert read_drain(tmp_path) is False
    assert [p.name for p in tmp_path.iterdir()] == ["drain"]  # no temporary file left


@pytest.mark.parametrize(
    "content", [b"", b"{not json", b'{"drain": "yes"}', b"[true]", b"\xff\xfe", b" " * 5000]
)
def test_a_malformed_flag_file_counts_as_draining(tmp_path: Path, content: bytes) -> None:
    drain_path(tmp_path).write_bytes(content)
    assert read_drain(tmp_path) is True


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"drain": "yes"}, "drain must be true or false, got 'yes'"),
        ({"drain": 1}, "drain must be true or false, got 1"),
        ({}, "drain must be true or false, got None"),
        ({"drain": True, "now": 1}, "unknown field(s) ['now']"),
        ([True], "must be a JSON object"),
        (None, "must be a JSON object"),
    ],
)
def test_a_bad_request_is_named(body: object, message: str) -> None:
    with pytest.raises(DrainRequestError) as info:
        parse_drain(body)
    assert message in str(info.value)


def test_requests_that_parse() -> None:
    assert parse_drain({"drain": True}) is True
    assert parse_drain({"drain": False}) is False


def test_the_peers_table_shows_a_draining_member() -> None:
    member = {"node_id": "n" * 26, "address": "127.0.0.1:1", "status": "alive", "local": True}
    assert _peer_row({**member, "draining": True})[3] == "alive,draining (self)"
    assert _peer_row({**member, "draining": False})[3] == "alive (self)"
    assert _peer_row(member)[3] == "alive (self)"  # a node too old to say


# -- three real daemons ----------------------------------------------------------


def draining_as_seen_by(cluster: Daemons, viewer: str, node_id: str) -> bool | None:
    members = cluster.api(viewer, "/v1/cluster/peers")["members"]
    return next((m["draining"] for m in members if m["node_id"] == node_id), None)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Daemons]:
    """Three members, all voting, one leader; stopped and removed at the end."""
    nodes = Daemons(Path(tempfile.mkdtemp(prefix="vrmdr-", dir="/tmp")))
    try:
        nodes.start("a")
        token = founding_token(nodes.procs["a"])
        for name in ("b", "c"):
            nodes.start(name, "--peer", nodes.address["a"], "--token", token)
        everyone = sorted(nodes.ids.values())

        def converged() -> bool:
            views = [nodes.api(n, "/v1/consensus") for n in nodes.ids]
            leaders = {v["leader"] for v in views}
            return (
                len(leaders) == 1
                and None not in leaders
                and all(sorted(v["members"]) == everyone and v["voters"] == everyone for v in views)
            )

        wait_until(converged, CONVERGE_S, "three committed voting members and one leader")
        yield nodes
    finally:
        nodes.stop_all()
        shutil.rmtree(nodes.root, ignore_errors=True)


def test_draining_the_node_of_a_stage_commits_an_epoch_without_it(cluster: Daemons) -> None:
    model = config_only_model(cluster.root, "tiny-llama", TINY_LLAMA)
    proposed = cli_json(
        cluster.root / "a", "placement", "propose", "--model", str(model),
        "--context", "256", "--dtype", "fp32",
    )  # fmt: skip
    holder_id = proposed["stages"][0]["node_id"]
    holder = next(n for n, i in cluster.ids.items() if i == holder_id)
    other = next(n for n in cluster.ids if n != holder)
    assert cluster.api(holder, "/v1/status")["draining"] is False

    drained = cli_json(cluster.root / holder, "drain")
    assert drained == {
        "schema": "vramancer.drain.v1", "node_id": holder_id, "draining": True, "changed": True,
    }  # fmt: skip
    assert cluster.api(holder, "/v1/status")["draining"] is True
    audited = cluster.api(holder, "/v1/audit/tail?n=20")["records"]
    drains = [r["body"] for r in audited if r["kind"] == "drain_changed"]
    assert drains == [{"node_id": holder_id, "draining": True}]  # the operator's act, logged

    def moved_off() -> bool:
        views = [cluster.placements(n) for n in cluster.ids]
        if any(view != views[0] for view in views) or len(views[0]) != 1:
            return False
        placement = views[0][0]
        nodes = {s["node_id"] for s in placement["stages"]}
        return placement["epoch"] > proposed["epoch"] and holder_id not in nodes

    wait_until(moved_off, CONVERGE_S, "a new epoch without the drained node on every node")

    # Every member sees it draining; the table says so.
    wait_until(
        lambda: draining_as_seen_by(cluster, other, holder_id) is True,
        CONVERGE_S,
        "the drain flag gossiped",
    )
    members = cli_json(cluster.root / other, "peers")["members"]
    assert {m["node_id"]: m["draining"] for m in members} == {
        i: i == holder_id for i in cluster.ids.values()
    }
    table = run_cli("vramancer", "--state-dir", str(cluster.root / other), "peers")
    row = next(line for line in table.stdout.splitlines() if holder_id[:12] in line)
    assert "alive,draining" in row, table.stdout
    only = cli_json(cluster.root / other, "peers", "--status", "draining")["members"]
    assert [m["node_id"] for m in only] == [holder_id]  # --status filters what STATUS shows

    # Draining twice changes nothing; bad requests are 400 and the node keeps serving.
    assert cli_json(cluster.root / holder, "drain")["changed"] is False
    for content, message in (
        (b'{"drain": "yes"}', "drain must be true or false"),
        (b"{not json", "not JSON"),
        (b'{"drain": true, "force": 1}', "unknown field"),
    ):
        response = cluster.post(holder, "/v1/drain", content)
        code, body = response.status_code, response.json()
        assert code == 400 and message in body["error"], body
    assert cluster.api(holder, "/v1/status")["draining"] is True

    # Undrain: the flag clears here and everywhere.
    undrained = cli_json(cluster.root / holder, "drain", "--off")
    assert undrained["draining"] is False and undrained["changed"] is True
    assert cluster.api(holder, "/v1/status")["draining"] is False
    wait_until(
        lambda: draining_as_seen_by(cluster, other, holder_id) is False,
        CONVERGE_S,
        "the cleared flag gossiped",
    )


def test_a_drained_node_restarts_drained_until_undrained(cluster: Daemons) -> None:
    name = "c"
    node_id = cluster.ids[name]
    shown = run_cli("vramancer", "--state-dir", str(cluster.root / name), "drain")
    assert shown.returncode == 0 and "draining  True" in shown.stdout, shown.stdout
    cluster.stop(name)
    assert read_drain(cluster.root / name) is True

    cluster.start(name, "--peer", cluster.address["a"])
    assert cluster.api(name, "/v1/status")["draining"] is True

    def alive_and_draining() -> bool:
        members = cluster.api("a", "/v1/cluster/peers")["members"]
        seen = next((m for m in members if m["node_id"] == node_id), None)
        return seen is not None and seen["status"] == "alive" and seen["draining"] is True

    wait_until(alive_and_draining, CONVERGE_S, "the restarted node seen alive and draining")

    cli_json(cluster.root / name, "drain", "--off")
    assert read_drain(cluster.root / name) is False
    wait_until(
        lambda: draining_as_seen_by(cluster, "a", node_id) is False,
        CONVERGE_S,
        "the restarted node undrained everywhere",
    )
