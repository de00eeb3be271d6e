"""Shared helpers of the real-daemon tests: start nodes, read their API, wait."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import program, run_cli, wait_for_socket

TOKEN_RE = re.compile(r"--token (vrm1\.\S+)")


def start_local(state: Path, name: str, *args: str) -> subprocess.Popen[str]:
    """A `vramancer-node join` on 127.0.0.1 (local preset, free port), ready to serve.

    Logs are discarded: nobody reads them while a test runs, and a full pipe would
    freeze the daemon on its next log line.
    """
    argv = [
        program("vramancer-node"), "join", "--state-dir", str(state), "--preset", "local",
        "--listen", "127.0.0.1:0", "--name", name, "--log-format", "json", *args,
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    wait_for_socket(state / "api.sock", proc)
    return proc


def founding_token(founder: subprocess.Popen[str]) -> str:
    """The join token a founding node printed on stdout."""
    assert founder.stdout is not None
    match = TOKEN_RE.search(founder.stdout.readline() + founder.stdout.readline())
    assert match is not None, "the founder printed no join token"
    return match.group(1)


def cli_json(state: Path, *args: str) -> Any:
    """`vramancer --state-dir STATE ARGS --json`, parsed; the command must succeed."""
    result = run_cli("vramancer", "--state-dir", str(state), *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll ``predicate``; return how long it took, or fail naming ``what``."""
    start_s = time.monotonic()
    while not predicate():
        assert time.monotonic() - start_s < timeout_s, f"{what} did not happen within {timeout_s} s"
        time.sleep(0.2)
    return time.monotonic() - start_s
