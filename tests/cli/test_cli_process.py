"""The two programs as a user runs them: real processes, real socket, real signals."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import program, run_cli, wait_for_socket


def start_node(state_dir: Path, env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            program("vramancer-node"),
            "join",
            "--state-dir",
            str(state_dir),
            "--preset",
            "local",
            "--log-format",
            "json",
            "--listen",
            "127.0.0.1:0",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    wait_for_socket(state_dir / "api.sock", proc)
    return proc


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_join_status_and_clean_shutdown(
    state_dir: Path, clean_env: dict[str, str], sig: int
) -> None:
    proc = start_node(state_dir, clean_env, "--name", "bench-1")
    try:
        result = run_cli("vramancer", "--state-dir", str(state_dir), "status", "--json")
        assert result.returncode == 0, result.stderr
        status = json.loads(result.stdout)
        identity = json.loads(
            run_cli(
                "vramancer-node", "identity", "show", "--state-dir", str(state_dir), "--json"
            ).stdout
        )
        assert status["schema"] == "vramancer.status.v1"
        assert status["node_id"] == identity["node_id"]
        assert status["name"] == "bench-1"
        assert status["state"] == "running"

        table = run_cli("vramancer", "--state-dir", str(state_dir), "status")
        assert table.returncode == 0
        assert identity["node_id"] in table.stdout and "running" in table.stdout
    finally:
        code, err = stop(proc, sig)
    assert code == 0, err
    assert not (state_dir / "api.sock").exists()
    lines = [json.loads(line) for line in err.splitlines()]
    assert {entry["node_id"] for entry in lines} == {identity["node_id"]}
    assert all(entry["trace_id"] != "-" for entry in lines)
    assert [e["msg"] for e in lines][-3:] == ["shutdown requested", "node stopping", "node stopped"]


def test_status_without_a_daemon_exits_1_with_one_line(state_dir: Path) -> None:
    result = run_cli("vramancer", "--state-dir", str(state_dir), "status", "--json")
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "no node is running" in result.stderr


def test_stale_socket_file_is_reported_as_not_answering(state_dir: Path) -> None:
    import socket as socketlib

    sock = socketlib.socket(socketlib.AF_UNIX)
    sock.bind(str(state_dir / "api.sock"))
    sock.close()  # a leftover socket file with nobody behind it
    result = run_cli("vramancer", "--state-dir", str(state_dir), "status")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "no node is answering" in result.stderr


def test_second_daemon_on_the_same_state_dir_is_refused(
    state_dir: Path, clean_env: dict[str, str]
) -> None:
    proc = start_node(state_dir, clean_env)
    try:
        second = run_cli(
            "vramancer-node", "join", "--state-dir", str(state_dir), "--preset", "local"
        )
        assert second.returncode == 1
        assert "another vramancer-node" in second.stderr
        # The first one still serves.
        assert run_cli("vramancer", "--state-dir", str(state_dir), "status").returncode == 0
    finally:
        assert stop(proc)[0] == 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--listen", "nonsense"], "network.listen"),
        (["--preset", "moon"], "preset: must be one of lan, wan, local"),
        (["--log-level", "loud"], "logging.level"),
    ],
)
def test_bad_flag_value_exits_1_naming_the_field(
    state_dir: Path, args: list[str], needle: str
) -> None:
    result = run_cli("vramancer-node", "join", "--state-dir", str(state_dir), *args)
    assert result.returncode == 1
    assert needle in result.stderr
    assert not (state_dir / "node.key").exists()


def test_bad_config_file_value_exits_1_naming_field_and_range(state_dir: Path) -> None:
    config = state_dir / "node.toml"
    config.write_text("[membership]\nprobe_interval_s = 999\n")
    for argv in (["join", "--state-dir", str(state_dir)], ["config", "show"]):
        result = run_cli("vramancer-node", *argv, "--config", str(config))
        assert result.returncode == 1
        assert "membership.probe_interval_s: must be in [0.01, 60] s; got 999" in result.stderr


def test_config_show_json_reflects_file_and_preset(state_dir: Path) -> None:
    config = state_dir / "node.toml"
    config.write_text('preset = "wan"\n[network]\npeers = ["10.1.2.3:7733"]\n')
    result = run_cli("vramancer-node", "config", "show", "--config", str(config), "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["schema"] == "vramancer.config.v1"
    assert body["preset"] == "wan"
    assert body["membership"]["probe_interval_s"] == 5.0
    assert body["network"]["peers"] == ["10.1.2.3:7733"]


def test_identity_init_and_show_and_sealed_key(state_dir: Path) -> None:
    secret = state_dir / "pass"
    secret.write_text("hunter2\n")
    made = run_cli(
        "vramancer-node",
        "identity",
        "init",
        "--state-dir",
        str(state_dir / "s"),
        "--passphrase-file",
        str(secret),
        "--json",
    )
    assert made.returncode == 0, made.stderr
    node_id = json.loads(made.stdout)["node_id"]
    shown = run_cli(
        "vramancer-node",
        "identity",
        "show",
        "--state-dir",
        str(state_dir / "s"),
        "--passphrase-file",
        str(secret),
        "--json",
    )
    assert json.loads(shown.stdout)["node_id"] == node_id
    assert "hunter2" not in made.stdout + made.stderr + shown.stdout + shown.stderr
    locked = run_cli("vramancer-node", "identity", "show", "--state-dir", str(state_dir / "s"))
    assert locked.returncode == 1 and "passphrase is required" in locked.stderr
    again = run_cli("vramancer-node", "identity", "init", "--state-dir", str(state_dir / "s"))
    assert again.returncode == 1 and "exists already" in again.stderr


def test_versions_and_usage_errors() -> None:
    node = run_cli("vramancer-node", "version", "--json")
    client = run_cli("vramancer", "version", "--json", "--state-dir", "/nonexistent-vrm")
    assert node.returncode == client.returncode == 0
    assert json.loads(node.stdout)["version"] == json.loads(client.stdout)["version"]
    assert json.loads(client.stdout)["node_version"] is None
    usage = run_cli("vramancer", "frobnicate")
    assert usage.returncode == 1 and "No such command" in usage.stderr
