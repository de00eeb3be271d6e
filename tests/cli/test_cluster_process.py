"""Issue acceptance with real daemons on 127.0.0.1: found, join with a token, refuse a
bad token while serving, restart from the stored certificate."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import program, run_cli, wait_for_socket

TOKEN_RE = re.compile(r"--token (vrm1\.\S+)")


class Daemon:
    """One real `vramancer-node join` process with JSON logs."""

    def __init__(self, state: Path, *args: str) -> None:
        self.state = state
        self.proc = subprocess.Popen(
            [
                program("vramancer-node"),
                "join",
                "--state-dir",
                str(state),
                "--preset",
                "local",
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for_socket(state / "api.sock", self.proc)
        self.logs: list[dict] = []

    def status(self) -> dict:
        result = run_cli("vramancer", "--state-dir", str(self.state), "status", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    @property
    def address(self) -> str:
        return self.status()["listening"][0]

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, err
        self.logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        return out

    def logged(self, msg: str) -> list[dict]:
        return [entry for entry in self.logs if entry["msg"] == msg]


@pytest.fixture
def dirs() -> Iterator[list[Path]]:
    root = Path(tempfile.mkdtemp(prefix="vrmc-", dir="/tmp"))
    try:
        yield [root / name for name in "abcd"]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_found_join_refuse_and_restart(dirs: list[Path]) -> None:
    founder = Daemon(dirs[0], "--name", "founder")
    joiner = fourth = None
    try:
        banner = founder.proc.stdout.readline() + founder.proc.stdout.readline()
        token = TOKEN_RE.search(banner).group(1)
        founder_status = founder.status()
        assert founder_status["serial"] == 1 and founder_status["admin"] is True
        address = founder.address

        joiner = Daemon(dirs[1], "--name", "joiner", "--peer", address, "--token", token)
        joined = joiner.status()
        assert joined["cluster_id"] == founder_status["cluster_id"]
        assert (joined["serial"], joined["roles"], joined["admin"]) == (2, ["member"], False)
        identity = json.loads(
            run_cli(
                "vramancer-node", "identity", "show", "--state-dir", str(dirs[1]), "--json"
            ).stdout
        )
        assert identity["cluster_id"] == founder_status["cluster_id"]
        assert identity["certificate"]["serial"] == 2

        # A third node with a forged token (right cluster, unknown secret) is refused...
        fake = token.rsplit(".", 1)[0] + "." + "a" * 52
        bad = run_cli(
            "vramancer-node",
            "join",
            "--state-dir",
            str(dirs[2]),
            "--preset",
            "local",
            "--listen",
            "127.0.0.1:0",
            "--peer",
            address,
            "--token",
            fake,
        )
        assert bad.returncode == 1
        assert "could not join the cluster" in bad.stderr and "bad_token" in bad.stderr
        assert not (dirs[2] / "cluster" / "membership").exists()
        # ... and the founder keeps serving: it answers and admits a fourth node.
        created = run_cli("vramancer", "--state-dir", str(dirs[0]), "token", "create", "--json")
        assert created.returncode == 0, created.stderr
        fresh = json.loads(created.stdout)["token"]
        fourth = Daemon(dirs[3], "--name", "fourth", "--peer", address, "--token", fresh)
        assert fourth.status()["serial"] == 3
        # The non-admin cannot make tokens.
        refused = run_cli("vramancer", "--state-dir", str(dirs[1]), "token", "create")
        assert refused.returncode == 1 and "not a cluster admin" in refused.stderr

        # Restart the joiner without a token: its stored certificate is enough.
        joiner.stop()
        joiner = Daemon(dirs[1], "--name", "joiner", "--peer", address)
        assert joiner.status()["serial"] == 2
    finally:
        for daemon in (joiner, fourth, founder):
            if daemon is not None:
                daemon.stop()

    joiner_id, founder_id = identity["node_id"], founder_status["node_id"]
    admitted = founder.logged("admitted node")
    assert {(e["peer_node_id"], e["peer_serial"]) for e in admitted} >= {(joiner_id, 2)}
    seen_by_founder = {
        (e["peer_node_id"], e["peer_serial"]) for e in founder.logged("authenticated peer")
    }
    assert (joiner_id, 2) in seen_by_founder
    seen_by_joiner = {
        (e["peer_node_id"], e["peer_serial"]) for e in joiner.logged("authenticated peer")
    }
    assert (founder_id, 1) in seen_by_joiner
    refusals = [e for e in founder.logs if e["msg"] == "refused connection"]
    assert any(e["reason"] == "bad_token" for e in refusals)

    # The founder's audit log, read offline from the stopped node's LMDB files, holds
    # the founding, the admissions, and the refused handshake (aggregated).
    offline = run_cli(
        "vramancer", "--state-dir", str(dirs[0]), "audit", "tail", "-n", "50", "--json"
    )
    assert offline.returncode == 0, offline.stderr
    records = json.loads(offline.stdout)["records"]
    kinds = [r["kind"] for r in records]
    assert kinds[:2] == ["cluster_founded", "token_created"]
    admitted = [r["body"] for r in records if r["kind"] == "node_admitted"]
    assert {(b["node_id"], b["serial"]) for b in admitted} >= {(joiner_id, 2)}
    refused = [r["body"] for r in records if r["kind"] == "handshake_refused"]
    assert any(b["reason"] == "bad_token" and b["count"] >= 1 for b in refused)
    verified = run_cli("vramancer", "--state-dir", str(dirs[0]), "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_member_without_token_and_no_cluster_is_told_what_to_do(dirs: list[Path]) -> None:
    result = run_cli(
        "vramancer-node",
        "join",
        "--state-dir",
        str(dirs[0]),
        "--preset",
        "local",
        "--listen",
        "127.0.0.1:0",
        "--peer",
        "127.0.0.1:9",
    )
    assert result.returncode == 1
    assert "pass --token" in result.stderr


def test_malformed_token_is_rejected_before_starting(dirs: list[Path]) -> None:
    result = run_cli(
        "vramancer-node",
        "join",
        "--state-dir",
        str(dirs[0]),
        "--peer",
        "127.0.0.1:9",
        "--token",
        "not-a-token",
    )
    assert result.returncode == 1
    assert "--token" in result.stderr
