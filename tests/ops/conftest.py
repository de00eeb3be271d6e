"""Two real daemons on 127.0.0.1 (a founder and a joiner), shared by the ops tests
(doctor, metrics) so the suite starts them once."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.kit import cli_json, founding_token, start_local, wait_until


@pytest.fixture(scope="session")
def cluster_pair() -> Iterator[tuple[Path, Path]]:
    """State directories of two running members that see each other alive; the founder
    also serves /metrics on a plain HTTP listener (``metrics_listening`` in its status)."""
    root = Path(tempfile.mkdtemp(prefix="vrmops-", dir="/tmp"))
    procs: list[subprocess.Popen[str]] = []
    try:
        founder = start_local(root / "a", "a", "--metrics", "127.0.0.1:0")
        procs.append(founder)
        token = founding_token(founder)
        address = cli_json(root / "a", "status")["listening"][0]
        procs.append(start_local(root / "b", "b", "--peer", address, "--token", token))

        def both_alive() -> bool:
            members = cli_json(root / "a", "peers")["members"]
            return sum(m["status"] == "alive" for m in members) == 2

        wait_until(both_alive, 60, "the founder seeing the joiner alive")
        yield root / "a", root / "b"
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.communicate(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
