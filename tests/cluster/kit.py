"""Shared helpers of the real-daemon tests: start nodes, read their API, wait."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

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


TINY_LLAMA: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 6,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 256,
    "max_position_embeddings": 512,
    "torch_dtype": "float32",
}
"""A config-only model small enough for any placement (no weights are written)."""


def config_only_model(root: Path, name: str, config: dict[str, Any]) -> Path:
    """A model directory holding only ``config.json`` (what placement reads)."""
    directory = root / name
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(config))
    return directory


class Daemons:
    """Named real daemons under ``root``, read through their API sockets.

    Polls go straight to the socket (a CLI process per poll is slow on a busy
    machine); tests exercise the CLI where a user would run it.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.ids: dict[str, str] = {}
        self.address: dict[str, str] = {}

    def start(self, name: str, *args: str) -> None:
        self.procs[name] = start_local(self.root / name, name, *args)
        status = self.api(name, "/v1/status")
        self.ids[name] = status["node_id"]
        self.address[name] = status["listening"][0]

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        proc.communicate(timeout=30)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            proc.communicate(timeout=30)

    def request(self, name: str, method: str, path: str, content: bytes = b"") -> httpx.Response:
        transport = httpx.HTTPTransport(uds=str(self.root / name / "api.sock"))
        with httpx.Client(transport=transport, base_url="http://node", timeout=30) as client:
            return client.request(method, path, content=content or None)

    def api(self, name: str, path: str) -> Any:
        """``GET path`` on ``name``; it must answer 200."""
        response = self.request(name, "GET", path)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, name: str, path: str, content: bytes) -> httpx.Response:
        return self.request(name, "POST", path, content)

    def status(self, name: str) -> dict[str, Any]:
        return self.api(name, "/v1/status")

    def consensus(self, name: str) -> dict[str, Any]:
        return self.status(name)["consensus"]

    def placements(self, name: str) -> list[dict[str, Any]]:
        return self.api(name, "/v1/placement")["placements"]
