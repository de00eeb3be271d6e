"""The membership simulation at small scale: it runs, converges and tells the truth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SIMULATION = REPO_ROOT / "simulations" / "membership_sim.py"
SIM_TIMEOUT_S = 60


def run_simulation(*args: str) -> tuple[list[str], dict[str, Any], int]:
    """Run the script; return its header lines, its JSON summary and its exit status."""
    done = subprocess.run(
        [sys.executable, str(SIMULATION), *args],
        capture_output=True,
        text=True,
        timeout=SIM_TIMEOUT_S,
        check=False,
    )
    header, _, body = done.stdout.partition("\n{")
    return header.splitlines(), json.loads("{" + body), done.returncode


@pytest.mark.parametrize("seed", [1, 2])
def test_fifty_nodes_without_loss_converge_with_no_false_deaths(seed: int) -> None:
    print(f"reproduce with seed={seed}")
    header, summary, status = run_simulation(
        "--nodes", "50", "--seed", str(seed), "--loss", "0", "--crash", "3", "--safety-s", "60"
    )
    assert status == 0
    assert header[0] == f"membership_sim seed={seed}"
    parameters = json.loads(header[1].removeprefix("parameters: "))
    assert parameters["nodes"] == 50 and parameters["seed"] == seed and parameters["crash"] == 3
    assert summary["join"]["time_to_converge_s"] is not None
    assert summary["liveness"]["converged"] is True
    safety = summary["safety"]
    assert safety["false_deaths"] == 0 and safety["falsely_dead_nodes"] == 0
    assert safety["false_suspicions"] == 0
    assert safety["crashed"] == 3 and safety["undetected_crashes"] == 0
    assert safety["detection_latency_all_s"]["max"] < 30.0
    assert summary["datagrams_oversized"] == 0 and summary["protocol_errors"] == 0
    assert summary["datagram_bytes_max"] <= summary["datagram_budget_bytes"]


def test_with_loss_the_healed_cluster_still_converges() -> None:
    header, summary, status = run_simulation(
        "--nodes",
        "30",
        "--seed",
        "3",
        "--loss",
        "0.1",
        "--duplicate",
        "0.05",
        "--crash",
        "2",
        "--safety-s",
        "40",
    )
    assert status == 0, header
    assert summary["liveness"]["converged"] is True
    assert summary["safety"]["undetected_crashes"] == 0
