"""Control-plane latency and placement recovery on real daemons.

Theory of operation
-------------------
Starts ``--nodes`` real ``vramancer-node`` processes on 127.0.0.1 (the first founds the
cluster, the others join with tokens; ``runtime.placement_source = "consensus"``, mDNS
off) and waits until every member is a Raft voter (up to 5).  Then it measures the
figures docs/slos.md names:

``placement_commit_s``
    wall time of ``POST /v1/placement`` (what ``vramancer placement propose`` sends)
    for a model never placed before: the receiving node reads the config, forwards it
    to the leader (unless it is the leader), the leader plans with ``place()`` and
    commits the epoch through Raft, and the receiving node answers once the entry is
    applied there.  ``--commits`` models (config.json only), alternately asked of the
    leader and of a follower; reported separately.
``recovery``
    ``--kills`` times: SIGKILL the node hosting stage 0 of a served model's committed
    placement, then poll a surviving node every 20 ms until (a) it sees the killed
    node ``suspect``, (b) ``dead`` (failure detection), and (c) a new epoch of the
    placement without the killed node is committed and applied there (placement
    recovery: detection + the leader's re-plan loop + one commit; an election first
    when the killed node led).  The killed node is restarted (it rejoins with its
    certificate) and the cluster settles before the next kill.

Figures are wall-clock seconds on this machine, measured by polling (a 20 ms bias at
most); nothing is asserted.  JSON on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from vramancer_node.runtime.randomckpt import DEMO_CONFIG, write_random_checkpoint

NODE_PROGRAM = "from cli.node import main; main()"
READY_TIMEOUT_S = 120.0
SETTLE_TIMEOUT_S = 180.0
POLL_INTERVAL_S = 0.02
STOP_TIMEOUT_S = 30.0
VOTERS_MAX = 5
CONTEXT_TOKENS = 256


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Node:
    name: str
    state: Path
    proc: subprocess.Popen[bytes]
    node_id: str = ""


def api(state: Path, method: str, path: str, body: Any = None, timeout_s: float = 60) -> Any:
    transport = httpx.HTTPTransport(uds=str(state / "api.sock"))
    with httpx.Client(transport=transport, base_url="http://node", timeout=timeout_s) as client:
        response = client.request(method, path, json=body)
    if response.status_code != 200:
        raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
    return response.json()


def wait(predicate: Any, timeout_s: float, what: str) -> float:
    start_s = time.monotonic()
    while True:
        try:
            if predicate():
                return time.monotonic() - start_s
        except (httpx.HTTPError, RuntimeError, KeyError):
            pass  # a node still starting, or a transient refusal: poll again
        if time.monotonic() - start_s > timeout_s:
            raise SystemExit(f"control_plane: {what} did not happen within {timeout_s:g} s")
        time.sleep(POLL_INTERVAL_S)


def start(
    root: Path, name: str, args: argparse.Namespace, *extra: str, listen: str = "127.0.0.1:0"
) -> Node:
    state = root / name
    state.mkdir(mode=0o700, exist_ok=True)
    argv = [
        sys.executable, "-c", NODE_PROGRAM, "join", "--state-dir", str(state),
        "--preset", args.preset, "--no-mdns", "--listen", listen, "--name", name,
        "--log-format", "json", "--config", str(root / "node.toml"),
        "--model-dir", str(root / "models" / "served"), *extra,
    ]  # fmt: skip
    with (root / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
    node = Node(name, state, proc)
    wait(
        lambda: api(state, "GET", "/readyz", timeout_s=5)["ready"], READY_TIMEOUT_S, f"{name} ready"
    )
    node.node_id = api(state, "GET", "/v1/status")["node_id"]
    return node


def consensus(node: Node) -> dict[str, Any]:
    status: dict[str, Any] = api(node.state, "GET", "/v1/status")["consensus"]
    return status


def start_cluster(root: Path, args: argparse.Namespace) -> list[Node]:
    (root / "node.toml").write_text(
        '[runtime]\nplacement_source = "consensus"\nthreads = 1\n'
        f"context_tokens = {CONTEXT_TOKENS}\n"
    )
    write_random_checkpoint(root / "models" / "served", DEMO_CONFIG, seed=1)
    nodes = [start(root, "c1", args)]
    address = api(nodes[0].state, "GET", "/v1/status")["listening"][0]
    for index in range(1, args.nodes):
        token = api(nodes[0].state, "POST", "/v1/tokens", {"ttl_s": 600, "uses": 1})["token"]
        nodes.append(start(root, f"c{index + 1}", args, "--peer", address, "--token", token))
        progress(f"started {nodes[-1].name}")
    settle(nodes)
    return nodes


def settle(nodes: list[Node]) -> None:
    """Every node alive, admitted, and min(nodes, 5) voters with one leader."""
    voters = min(len(nodes), VOTERS_MAX)
    ids = {n.node_id for n in nodes}

    def settled() -> bool:
        views = [consensus(n) for n in nodes]
        leaders = {v.get("leader") for v in views}
        return (
            len(leaders) == 1
            and None not in leaders
            and all(set(v["members"]) >= ids and len(v["voters"]) == voters for v in views)
        )

    try:
        wait(settled, SETTLE_TIMEOUT_S, f"{voters} voters and one leader")
    except SystemExit:
        for node in nodes:
            view = consensus(node)
            progress(
                f"{node.name} {node.node_id}: "
                + json.dumps(
                    {
                        k: view.get(k)
                        for k in ("role", "term", "leader", "voters", "learners", "members")
                    }
                )
            )
        raise


def leader_of(nodes: list[Node]) -> Node:
    leader_id = consensus(nodes[0])["leader"]
    return next(n for n in nodes if n.node_id == leader_id)


def commits(root: Path, nodes: list[Node], count: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"leader": [], "follower": []}
    for index in range(count):
        model = root / "models" / f"commit-{index}"
        model.mkdir(parents=True)
        (model / "config.json").write_text(json.dumps(DEMO_CONFIG))
        leader = leader_of(nodes)
        role = "leader" if index % 2 == 0 else "follower"
        asked = leader if role == "leader" else next(n for n in nodes if n is not leader)
        body = {"model": str(model), "context_tokens": CONTEXT_TOKENS}
        start_s = time.monotonic()
        api(asked.state, "POST", "/v1/placement", body)
        out[role].append(time.monotonic() - start_s)
    return out


def placement(node: Node, model: str) -> dict[str, Any] | None:
    placements = api(node.state, "GET", "/v1/placement")["placements"]
    return next((p for p in placements if p["model"] == model), None)


def recover_once(root: Path, nodes: list[Node], args: argparse.Namespace) -> dict[str, Any]:
    before = placement(nodes[0], "served")
    assert before is not None
    victim_id = before["stages"][0]["node_id"]
    victim = next(n for n in nodes if n.node_id == victim_id)
    was_leader = consensus(victim).get("role") == "leader"
    observer = next(n for n in nodes if n is not victim)
    address = api(victim.state, "GET", "/v1/status")["listening"][0]
    seen: dict[str, float] = {}

    def status_of_victim() -> str:
        members = api(observer.state, "GET", "/v1/cluster/peers")["members"]
        return next(m["status"] for m in members if m["node_id"] == victim_id)

    def recovered() -> bool:
        now_s = time.monotonic() - killed_s
        status = status_of_victim()
        if status in ("suspect", "dead"):
            seen.setdefault("suspect_s", now_s)
        if status == "dead":
            seen.setdefault("dead_s", now_s)
        after = placement(observer, "served")
        return (
            after is not None
            and after["epoch"] > before["epoch"]
            and all(s["node_id"] != victim_id for s in after["stages"])
        )

    victim.proc.send_signal(signal.SIGKILL)
    killed_s = time.monotonic()
    victim.proc.wait()
    recovery_s = wait(recovered, SETTLE_TIMEOUT_S, "a placement without the killed node")
    result = {"killed_leader": was_leader, "recovery_s": round(recovery_s, 3)}
    result.update({k: round(v, 3) for k, v in seen.items()})
    # It rejoins with its certificate, on its port as a service would.
    nodes[nodes.index(victim)] = start(root, victim.name, args, listen=address)
    settle(nodes)
    return result


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), 4),
        "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 4),
        "max": round(ordered[-1], 4),
        "samples": len(ordered),
    }


def main() -> None:
    args = parse_args()
    progress(f"control_plane: {vars(args)}")
    started_s = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vrmcp-", dir="/tmp") as tmp:
        root = Path(tmp)
        nodes = start_cluster(root, args)
        try:
            progress("measuring placement commits")
            latencies = commits(root, nodes, args.commits)
            leader = leader_of(nodes)
            body = {"model": str(root / "models" / "served"), "context_tokens": CONTEXT_TOKENS}
            api(leader.state, "POST", "/v1/placement", body)
            kills = []
            for index in range(args.kills):
                progress(f"kill {index + 1} of {args.kills}")
                kills.append(recover_once(root, nodes, args))
        finally:
            for node in nodes:
                if node.proc.poll() is None:
                    node.proc.send_signal(signal.SIGTERM)
            for node in nodes:
                try:
                    node.proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
    report = {
        "parameters": vars(args),
        "placement_commit_s": {role: summary(v) for role, v in latencies.items()},
        "recovery": {
            "runs": kills,
            "detection_dead_s": summary([k["dead_s"] for k in kills if "dead_s" in k]),
            "recovery_s": summary([k["recovery_s"] for k in kills]),
        },
        "machine": {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)},
        "wall_s": round(time.monotonic() - started_s, 1),
    }
    print(json.dumps(report, indent=2))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=3, help="daemons (default 3)")
    parser.add_argument("--commits", type=int, default=10, help="placements committed")
    parser.add_argument("--kills", type=int, default=3, help="recoveries measured")
    parser.add_argument("--preset", choices=("lan", "local"), default="lan")
    args = parser.parse_args()
    if args.nodes < 2:
        parser.error("--nodes must be at least 2 (a kill must leave a survivor)")
    return args


if __name__ == "__main__":
    main()
