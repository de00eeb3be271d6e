"""Membership with real daemons: three on 127.0.0.1 gossip, one is SIGKILLed and
declared dead within the local preset's bound, then restarted and alive again."""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.kit import cli_json, founding_token, start_local, wait_until
from tests.conftest import run_cli
from vramancer_node.config import build_config

LOCAL = build_config({"preset": "local"}).membership


def dead_bound_s(members: int) -> float:
    """Lifeguard's worst case on the local preset: detect, then the maximum suspicion.

    Detection: with randomized round-robin probing, a member probed just before it
    died is probed again at most 2(n - 1) - 1 periods later (SWIM, section 4.3: the
    rest of this round, then the whole next one with it last), and suspected when that
    probe's period ends.  (Counting only two periods here made the bound two seconds
    short of the worst case; full test runs on 2 cores hit that.)
    """
    minimum = LOCAL.suspicion_mult * math.log10(max(1, members)) * LOCAL.probe_interval_s
    suspicion_max = LOCAL.suspicion_max_timeout_mult * minimum
    detect = 2 * (members - 1) * LOCAL.probe_interval_s
    return detect + suspicion_max + 2.0  # slack for process scheduling on 2 cores


def peers(state: Path) -> dict[str, str]:
    body = cli_json(state, "peers")
    assert body["schema"] == "vramancer.peers.v1"
    return {m["name"]: m["status"] for m in body["members"]}


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vrmm-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_three_daemons_gossip_detect_a_crash_and_see_the_restart(root: Path) -> None:
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        procs["a"] = start_local(root / "a", "a")
        token = founding_token(procs["a"])
        address = json.loads(
            run_cli("vramancer", "--state-dir", str(root / "a"), "status", "--json").stdout
        )["listening"][0]
        for name in ("b", "c"):
            procs[name] = start_local(root / name, name, "--peer", address, "--token", token)

        everyone_alive = {"a": "alive", "b": "alive", "c": "alive"}
        wait_until(lambda: all(peers(root / n) == everyone_alive for n in "abc"), 30, "convergence")
        table = run_cli("vramancer", "--state-dir", str(root / "a"), "peers")
        assert table.returncode == 0 and "NODE" in table.stdout and "MEM FREE/TOTAL" in table.stdout
        nothing = run_cli("vramancer", "--state-dir", str(root / "a"), "peers", "--status", "dead")
        assert nothing.returncode == 2  # the filter matched nothing

        procs["c"].send_signal(signal.SIGKILL)
        procs["c"].communicate(timeout=30)  # reap it and close its pipe
        bound = dead_bound_s(3)
        took = wait_until(
            lambda: peers(root / "a").get("c") == "dead" and peers(root / "b").get("c") == "dead",
            bound,
            "declaring the killed node dead",
        )
        assert took <= bound
        dead = run_cli(
            "vramancer", "--state-dir", str(root / "a"), "peers", "--status", "dead", "--json"
        )
        assert dead.returncode == 0
        assert [m["name"] for m in json.loads(dead.stdout)["members"]] == ["c"]

        procs["c"] = start_local(root / "c", "c", "--peer", address)  # stored certificate, no token
        wait_until(lambda: all(peers(root / n) == everyone_alive for n in "abc"), 30, "rejoin")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            proc.communicate(timeout=30)
