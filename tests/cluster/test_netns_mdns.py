"""Three daemons in three network namespaces on one bridge find each other by mDNS
alone: no --peer anywhere.  A fourth namespace on the same LAN holds a second cluster,
and the two stay apart.  Needs root (skipped with the reason otherwise; `.ci/run`
turns that skip into a failure)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.conftest import program, run_cli, wait_for_socket
from tests.netns_kit import lan, require_netns

TOKEN_RE = re.compile(r"--token (vrm1\.\S+)")
CONVERGE_S = 60


def test_three_namespaces_find_each_other_by_mdns_alone() -> None:
    require_netns()
    root = Path(tempfile.mkdtemp(prefix="vrmn-", dir="/tmp"))
    procs: list[subprocess.Popen[str]] = []
    try:
        with lan(4) as hosts:

            def start(index: int, *extra: str) -> subprocess.Popen[str]:
                host = hosts[index]
                argv = [
                    program("vramancer-node"),
                    "join",
                    "--state-dir",
                    str(root / str(index)),
                    "--preset",
                    "lan",
                    "--name",
                    f"ns{index}",
                    "--listen",
                    f"{host.address}:7733",
                    "--log-format",
                    "json",
                    *extra,
                ]
                # Logs go to a file, not a pipe: nobody reads them while the test runs,
                # and a full pipe would freeze the daemon on its next log line.
                with open(root / f"{index}.log", "a") as log_file:
                    proc = subprocess.Popen(
                        host.command(argv), stdout=subprocess.PIPE, stderr=log_file, text=True
                    )
                procs.append(proc)
                wait_for_socket(root / str(index) / "api.sock", proc, timeout_s=30)
                return proc

            founder = start(0)
            token = TOKEN_RE.search(founder.stdout.readline() + founder.stdout.readline()).group(1)
            start(1, "--token", token)
            start(2, "--token", token)

            def views() -> list[dict[str, str]]:
                out = []
                for index in range(3):
                    result = run_cli(
                        "vramancer", "--state-dir", str(root / str(index)), "peers", "--json"
                    )
                    assert result.returncode == 0, result.stderr
                    out.append(
                        {m["name"]: m["status"] for m in json.loads(result.stdout)["members"]}
                    )
                return out

            expected = {"ns0": "alive", "ns1": "alive", "ns2": "alive"}
            deadline = time.monotonic() + CONVERGE_S
            while views() != [expected] * 3:
                assert time.monotonic() < deadline, f"no convergence by mDNS: {views()}"
                time.sleep(0.5)
            statuses = [
                json.loads(
                    run_cli(
                        "vramancer", "--state-dir", str(root / str(i)), "status", "--json"
                    ).stdout
                )
                for i in range(3)
            ]
            assert len({s["cluster_id"] for s in statuses}) == 1
            assert all(s["peers"] == [] for s in statuses)  # no --peer was given anywhere

            # A node with neither token nor peer on a LAN that has a cluster is told so.
            lonely_proc = subprocess.Popen(
                hosts[3].command(
                    [
                        program("vramancer-node"),
                        "join",
                        "--state-dir",
                        str(root / "3"),
                        "--preset",
                        "lan",
                        "--name",
                        "ns3",
                        "--listen",
                        f"{hosts[3].address}:7733",
                    ]
                ),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                out, err = lonely_proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                lonely_proc.terminate()
                out, err = lonely_proc.communicate(timeout=30)
                raise AssertionError(f"lonely node did not exit: {out}\n{err[-3000:]}") from None
            lonely = subprocess.CompletedProcess(lonely_proc.args, lonely_proc.returncode, out, err)
            assert lonely.returncode == 1
            assert "pass --token TOKEN to join, or --no-mdns" in lonely.stderr
            # It founds its own cluster with --no-mdns, then comes back with mDNS on: the
            # two clusters see each other's adverts and ignore them.
            other = start(3, "--no-mdns")
            other.terminate()
            other.communicate(timeout=30)
            procs.remove(other)
            start(3)
            time.sleep(6)  # several browse rounds: long enough to (wrongly) merge
            assert views() == [expected] * 3
            alone = run_cli("vramancer", "--state-dir", str(root / "3"), "peers", "--json")
            assert [m["name"] for m in json.loads(alone.stdout)["members"]] == ["ns3"]
            other_status = json.loads(
                run_cli("vramancer", "--state-dir", str(root / "3"), "status", "--json").stdout
            )
            assert other_status["cluster_id"] != statuses[0]["cluster_id"]

            for proc in procs:
                proc.terminate()
            for index, proc in enumerate(procs):
                proc.communicate(timeout=30)
                err = (root / f"{index}.log").read_text()
                assert proc.returncode == 0, err[-2000:]
                messages = [
                    json.loads(line)["msg"] for line in err.splitlines() if line.startswith("{")
                ]
                if index in (1, 2):
                    assert "found the cluster with mDNS" in messages
                    assert "admitted to cluster" in messages
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        shutil.rmtree(root, ignore_errors=True)
