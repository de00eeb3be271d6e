"""Shared fixtures: short state directories and the installed command-line programs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Property tests must not depend on how busy the machine is: no per-example deadline
# and no "input generation is slow" failure (a 2-core CI machine running daemons in
# other tests once took 1.4 s for one draw).  Explicit @settings still apply on top.
settings.register_profile("vramancer", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("vramancer")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
BIN_DIR = Path(sys.executable).parent


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A fresh, short state directory (Unix socket paths must stay under 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="vrm-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def program(name: str) -> str:
    """Path of an installed console script (``vramancer``, ``vramancer-node``)."""
    path = BIN_DIR / name
    if not path.exists():
        raise RuntimeError(f"{path} is missing: install the package (scripts/dev.sh setup)")
    return str(path)


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``vramancer``/``vramancer-node`` ARGS and capture its output."""
    return subprocess.run(
        [program(args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout
    )


def _ready(path: Path) -> bool:
    """GET /readyz over the API socket: True once the node reports ready."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        try:
            sock.connect(str(path))
            sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
            reply = sock.recv(64)
        except OSError:
            return False
    return reply.startswith(b"HTTP/1.1 200")


def wait_for_socket(path: Path, proc: subprocess.Popen[str], timeout_s: float = 30) -> None:
    """Wait until the node's API socket ``path`` answers ready (every service started),
    failing early (with its output) if ``proc`` died."""
    deadline = time.monotonic() + timeout_s
    while not (path.exists() and _ready(path)):
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"daemon exited {proc.returncode}: {out}\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not become ready within {timeout_s} s")
        time.sleep(0.05)


@pytest.fixture
def clean_env() -> dict[str, str]:
    """The environment without systemd's directory variables (tests pass --state-dir)."""
    env = dict(os.environ)
    for key in ("STATE_DIRECTORY", "CONFIGURATION_DIRECTORY"):
        env.pop(key, None)
    return env
