"""Known peers: a node restarted without --peer and without mDNS, on another port, finds
its cluster again through the members it saw alive when it stopped."""

from __future__ import annotations

import json
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from tests.cluster.kit import cli_json, founding_token, start_local, wait_until
from vramancer_node.knownpeers import (
    ADDRESSES_MAX,
    KnownPeersKeeper,
    decode,
    encode,
    known_peers_path,
    load_known_peers,
)

CONVERGE_S = 60.0


def test_addresses_round_trip_bounded_and_deduplicated() -> None:
    addresses = [f"10.0.0.{i}:7733" for i in range(ADDRESSES_MAX + 5)]
    assert decode(encode([*addresses[:2], addresses[0]])) == addresses[:2]
    assert decode(encode(addresses)) == addresses[:ADDRESSES_MAX]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"{not json", "not JSON"),
        (b'{"version": 2, "addresses": []}', "another version"),
        (b'{"version": 1, "addresses": "10.0.0.1:7733"}', "not a list"),
        (b'{"version": 1, "addresses": [7733]}', "not a string"),
        (b'{"version": 1, "addresses": ["no-port"]}', "no port"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_a_malformed_file_is_ignored_not_fatal(tmp_path: Path, content: bytes, why: str) -> None:
    known_peers_path(tmp_path).write_bytes(content)
    assert load_known_peers(tmp_path) == [], why
    assert known_peers_path(tmp_path).read_bytes() == content  # left for the operator


def test_saved_privately_and_only_when_changed(tmp_path: Path) -> None:
    keeper = KnownPeersKeeper(tmp_path)
    trio.run(keeper.save, ["10.0.0.1:7733"])
    path = known_peers_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_known_peers(tmp_path) == ["10.0.0.1:7733"]
    path.write_bytes(b"edited by hand")
    trio.run(keeper.save, ["10.0.0.1:7733"])  # unchanged since the last save: not written
    assert path.read_bytes() == b"edited by hand"
    trio.run(keeper.save, ["10.0.0.2:7733"])
    assert load_known_peers(tmp_path) == ["10.0.0.2:7733"]


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vrmk-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _statuses(state: Path) -> dict[str, str]:
    return {m["name"]: m["status"] for m in cli_json(state, "peers")["members"]}


def test_a_node_restarted_elsewhere_finds_its_cluster_through_known_peers(root: Path) -> None:
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        procs["a"] = start_local(root / "a", "a", "--no-mdns")
        token = founding_token(procs["a"])
        address = cli_json(root / "a", "status")["listening"][0]
        procs["b"] = start_local(root / "b", "b", "--no-mdns", "--peer", address, "--token", token)
        both = {"a": "alive", "b": "alive"}
        wait_until(
            lambda: _statuses(root / "a") == both and _statuses(root / "b") == both,
            CONVERGE_S,
            "a and b see each other",
        )
        first_b = cli_json(root / "b", "status")["listening"][0]

        procs["b"].send_signal(signal.SIGTERM)
        procs["b"].communicate(timeout=30)
        saved = json.loads(known_peers_path(root / "b").read_bytes())
        assert saved == {"version": 1, "addresses": [address]}  # written at shutdown

        # No --peer, no mDNS, and a new port (listen 127.0.0.1:0): only the file helps.
        procs["b"] = start_local(root / "b", "b", "--no-mdns")
        second_b = cli_json(root / "b", "status")["listening"][0]
        assert second_b != first_b
        wait_until(lambda: _statuses(root / "b") == both, CONVERGE_S, "b finds a again")
        wait_until(
            lambda: any(
                m["name"] == "b" and m["status"] == "alive" and m["address"] == second_b
                for m in cli_json(root / "a", "peers")["members"]
            ),
            CONVERGE_S,
            "a sees b alive at its new address",
        )
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            proc.communicate(timeout=30)
