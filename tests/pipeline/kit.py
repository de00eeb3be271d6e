"""Real daemons serving tiny checkpoints, their API over the Unix socket, and the
single-process reference the pipeline must reproduce."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.cluster.kit import founding_token, start_local, wait_until
from vramancer_node.runtime import SamplingParams, generate, load_stage, read_model_config

CHUNK_TOKENS = 4
"""Small prefill chunks, so a ten-token prompt crosses the pipeline in three messages."""
CONTEXT_TOKENS = 64
CONFIG_TOML = f"""
[runtime]
prefill_chunk_tokens = {CHUNK_TOKENS}
context_tokens = {CONTEXT_TOKENS}
threads = 1
"""
STOP_TIMEOUT_S = 30


@dataclass
class Daemon:
    name: str
    state: Path
    proc: subprocess.Popen[str]
    node_id: str = ""


def api(state: Path, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One API request; the JSON body, or the list of JSON lines of a stream."""
    transport = httpx.HTTPTransport(uds=str(state / "api.sock"))
    with httpx.Client(transport=transport, base_url="http://node", timeout=120) as client:
        response = client.request(method, path, json=body)
    if response.headers.get("content-type", "").startswith("application/x-ndjson"):
        return response.status_code, [json.loads(line) for line in response.text.splitlines()]
    return response.status_code, response.json()


def start_cluster(
    root: Path, models: Sequence[Sequence[Path]], *, config_toml: str = CONFIG_TOML
) -> list[Daemon]:
    """One daemon per entry of ``models`` (its checkpoint directories); the first founds."""
    config = root / "node.toml"
    config.write_text(config_toml)
    daemons: list[Daemon] = []
    token = address = ""
    for index, dirs in enumerate(models):
        name = f"p{index + 1}"
        args = ["--config", str(config), *(a for d in dirs for a in ("--model-dir", str(d)))]
        if index:
            args += ["--peer", address, "--token", token]
        proc = start_local(root / name, name, *args)
        daemons.append(Daemon(name, root / name, proc))
        if index == 0:
            token = founding_token(proc)
            address = api(root / name, "GET", "/v1/status")[1]["listening"][0]
    for daemon in daemons:
        daemon.node_id = api(daemon.state, "GET", "/v1/status")[1]["node_id"]

    def everyone_alive() -> bool:
        members = api(daemons[0].state, "GET", "/v1/cluster/peers")[1]["members"]
        return sum(m["status"] == "alive" for m in members) == len(daemons)

    wait_until(everyone_alive, 60, "every member alive")
    return daemons


def stop_cluster(daemons: Sequence[Daemon]) -> None:
    for daemon in daemons:
        if daemon.proc.poll() is None:
            daemon.proc.send_signal(signal.SIGTERM)
    for daemon in daemons:
        try:
            daemon.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            daemon.proc.kill()
            daemon.proc.wait()
        if daemon.proc.stdout is not None:
            daemon.proc.stdout.close()


def reference_tokens(model_dir: Path, prompt: Sequence[int], max_new_tokens: int) -> list[int]:
    """Greedy tokens of the whole model in this process (the pipeline's reference)."""
    layers = read_model_config(model_dir).num_hidden_layers
    stage = load_stage(model_dir, 0, layers, has_embedding=True, has_head=True)
    params = SamplingParams(max_new_tokens=max_new_tokens)
    return generate([stage], prompt, params, prefill_chunk_tokens=CHUNK_TOKENS)


def stages_json(*spans: tuple[Daemon, int, int]) -> dict[str, Any]:
    return {
        "stages": [
            {"node_id": d.node_id, "first_layer": first, "last_layer_exclusive": last}
            for d, first, last in spans
        ]
    }
