"""Two real daemons: hostile datagrams are dropped and counted while gossip goes on,
and the members cosign each other's audit checkpoints over the secure channel."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from crypto.gossip import Keyring
from protocol.membership import encode
from protocol.membership.messages import Ping
from tests.cluster.kit import cli_json, founding_token, start_local, wait_until


@pytest.fixture
def pair() -> Iterator[tuple[Path, Path]]:
    root = Path(tempfile.mkdtemp(prefix="vrmo-", dir="/tmp"))
    procs = []
    try:
        founder = start_local(root / "a", "a")
        procs.append(founder)
        token = founding_token(founder)
        address = cli_json(root / "a", "status")["listening"][0]
        procs.append(start_local(root / "b", "b", "--peer", address, "--token", token))
        yield root / "a", root / "b"
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.communicate(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def test_bad_datagrams_are_dropped_and_counted_and_gossip_continues(pair) -> None:
    a, _b = pair
    status = cli_json(a, "status")
    host, port = status["listening"][0].rsplit(":", 1)
    stranger = Keyring([os.urandom(32)], status["cluster_id"])  # right cluster, wrong key
    ping = encode(Ping(seq_no=1, target_id=status["node_id"], source_id="intruder"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for payload in (b"", b"\x00" * 10, os.urandom(200), os.urandom(1400), stranger.seal(ping)):
            sock.sendto(payload, (host, int(port)))
    wait_until(
        lambda: cli_json(a, "status")["gossip"]["dropped"].get("seal", 0) >= 5,
        10,
        "counting 5 unopenable datagrams",
    )
    # The node is unharmed: it still answers and both members stay alive.
    wait_until(
        lambda: (
            {m["name"]: m["status"] for m in cli_json(a, "peers")["members"]}
            == {"a": "alive", "b": "alive"}
        ),
        15,
        "both members alive",
    )


def test_members_cosign_each_others_checkpoints(pair) -> None:
    a, b = pair
    b_id = cli_json(b, "status")["node_id"]
    a_id = cli_json(a, "status")["node_id"]
    # local preset: checkpoint exchange every 5 s

    def cosigners(state: Path) -> str:
        checkpoint = cli_json(state, "audit", "verify").get("checkpoint") or {}
        return " ".join(checkpoint.get("cosigned_by") or [])

    wait_until(lambda: f"/{b_id}/witness" in cosigners(a), 30, "b cosigning a's checkpoint")
    wait_until(lambda: f"/{a_id}/witness" in cosigners(b), 30, "a cosigning b's checkpoint")
    report = cli_json(a, "audit", "verify")
    assert report["ok"] is True
    kinds = [r["kind"] for r in cli_json(a, "audit", "tail", "-n", "50")["records"]]
    assert kinds[:2] == ["cluster_founded", "token_created"]
    assert "node_admitted" in kinds and "token_used" in kinds
    joiner_kinds = [r["kind"] for r in cli_json(b, "audit", "tail")["records"]]
    assert joiner_kinds[0] == "node_admitted"  # the joiner records its own admission
