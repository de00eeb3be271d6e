"""``vramancer-node demo``: a whole cluster on this machine, one generation through it.

Theory of operation
-------------------
1. Without ``--model``, write a small random-weight Llama checkpoint
   (:mod:`vramancer_node.runtime.randomckpt`) into a temporary directory, and say so.
2. Start ``--nodes`` daemons on 127.0.0.1 as subprocesses (``vramancer-node join``
   with temporary state directories): the first founds the cluster, the others join
   it with a token the first one makes.  Every node serves the model
   (``--model-dir``).
3. Wait until the first node sees every member alive, then commit a placement that
   spans all nodes through the Raft log: the layers split evenly over the nodes in
   order, proposed on the founder as explicit stages (``POST /v1/placement`` with
   ``stages``; the optimiser would rightly put a tiny model on one node).  The
   nodes run with ``runtime.placement_source = "consensus"``, so every node drives
   and serves under the committed epoch; the demo waits until every node has
   applied it.
4. Load the stages with a one-token warm-up, then stream the generation from the
   first node (``POST /v1/generate``) and print the peers and the committed
   placement (its epoch and log index).
5. Stop every daemon with SIGTERM and wait for it (SIGKILL after
   :data:`STOP_TIMEOUT_S`); the temporary directories are removed.

``--json`` prints one object: ``token_ids`` (greedy unless sampling options are
given), ``timings``, the nodes, the committed ``placement`` and its
``placement_epoch``.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console

from cli.apiclient import api_get, api_post
from cli.common import JSON_OPTION, fail, print_json, print_table
from cli.generate import parse_ids, stream_generation
from cli.placement import even_stages
from vramancer_node.layout import API_SOCKET_NAME

NODES_DEFAULT = 3
NODES_MAX = 8
READY_TIMEOUT_S = 90.0
"""Starting a daemon imports torch; on a loaded machine that takes a while."""
MEMBERS_TIMEOUT_S = 60.0
PLACEMENT_TIMEOUT_S = 60.0
"""Every node applies the committed placement within this (it is one log entry)."""
DEMO_DTYPE = "fp32"
DEMO_CONTEXT_TOKENS = 2048
"""``runtime.context_tokens`` of the demo's nodes (at most the model's
``max_position_embeddings``): the KV cache the placement reserves per stage."""
STOP_TIMEOUT_S = 20.0
POLL_INTERVAL_S = 0.1
TOKEN_RE = re.compile(r"--token (vrm1\.\S+)")
NODE_PROGRAM = "from cli.node import main; main()"


def demo(
    nodes: int = typer.Option(NODES_DEFAULT, "--nodes", help=f"Daemons to start (1-{NODES_MAX})."),
    model: Path | None = typer.Option(
        None, "--model", help="A Hugging Face checkpoint directory [default: a random one]."
    ),
    prompt_ids: str = typer.Option("1,2,3,4,5", "--prompt-ids", help="The prompt's token ids."),
    max_tokens: int = typer.Option(16, "--max-tokens", help="Tokens to generate."),
    temperature: float = typer.Option(0.0, "--temperature", help="0: greedy."),
    top_k: int = typer.Option(0, "--top-k", help="Keep the k most likely tokens; 0: all."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling mass; 1: all."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    threads: int = typer.Option(
        1, "--threads", help="Torch CPU threads per node (runtime.threads; 0: torch's default)."
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Start a local cluster, generate through a pipeline spanning it, stop it."""
    if not 1 <= nodes <= NODES_MAX:
        fail(f"--nodes must be from 1 to {NODES_MAX}")
    try:
        prompt = parse_ids(prompt_ids)
    except ValueError as exc:
        fail(f"--prompt-ids: {exc}")
    say = _sayer(json_out)
    root = Path(tempfile.mkdtemp(prefix="vrm-demo-", dir="/tmp"))
    try:
        model_dir = _model(root, model, say)
        config = root / "node.toml"
        config.write_text(
            f'[runtime]\nthreads = {max(0, threads)}\ndtype = "{DEMO_DTYPE}"\n'
            f'context_tokens = {DEMO_CONTEXT_TOKENS}\nplacement_source = "consensus"\n'
        )
        with local_cluster(root, nodes, model_dir, config, say) as states:
            result = _run(states, model_dir, prompt, max_tokens,
                          temperature, top_k, top_p, seed, say, json_out)  # fmt: skip
        say("all nodes stopped (SIGTERM)")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if json_out:
        print_json(result)


def _sayer(quiet: bool) -> Any:
    console = Console(stderr=True)

    def say(text: str) -> None:
        if not quiet:
            console.print(f"[bold]==>[/bold] {text}")

    return say


def _model(root: Path, model: Path | None, say: Any) -> Path:
    if model is not None:
        if not (model / "config.json").is_file():
            fail(f"--model {model}: no config.json there (a Hugging Face checkpoint directory)")
        return model.resolve()
    from vramancer_node.runtime.randomckpt import DEMO_CONFIG, write_random_checkpoint

    directory = write_random_checkpoint(root / "demo-llama")
    say(
        f"no --model given: created a random-weight Llama checkpoint "
        f"({DEMO_CONFIG['num_hidden_layers']} layers, hidden {DEMO_CONFIG['hidden_size']}) "
        f"in {directory}; its tokens are noise. Run a real model with "
        "`vramancer-node demo --model DIR` (DIR: a Hugging Face Llama/Mistral/Qwen2 "
        "directory with config.json and *.safetensors) and --prompt-ids from its tokenizer."
    )
    return directory


@contextmanager
def local_cluster(
    root: Path, count: int, model_dir: Path, config: Path, say: Any
) -> Iterator[list[Path]]:
    """``count`` daemons on 127.0.0.1 serving ``model_dir``, their state directories
    under ``root`` (the first founded the cluster, every member is alive); stopped with
    SIGTERM on exit.  Also used by ``benchmarks/pipeline.py``."""
    procs: list[subprocess.Popen[bytes]] = []
    states = [root / f"n{i + 1}" for i in range(count)]
    try:
        say(f"starting node 1 of {count}: it founds the cluster")
        procs.append(_start(states[0], "demo-1", model_dir, "--config", str(config)))
        _wait_ready(states[0], procs[0])
        founder = api_get(states[0], "/v1/status")
        address = founder["listening"][0]
        for index in range(1, count):
            token = api_post(states[0], "/v1/tokens", {"ttl_s": 600, "uses": 1})["token"]
            say(f"starting node {index + 1}: joins {address} with a token")
            extra = ("--config", str(config), "--peer", address, "--token", token)
            procs.append(_start(states[index], f"demo-{index + 1}", model_dir, *extra))
        for state, proc in zip(states[1:], procs[1:], strict=True):
            _wait_ready(state, proc)
        _wait_members(states[0], count)
        yield states
    finally:
        _stop(procs)


def _start(state: Path, name: str, model_dir: Path, *args: str) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable, "-c", NODE_PROGRAM, "join", "--state-dir", str(state),
        "--preset", "local", "--listen", "127.0.0.1:0", "--name", name,
        "--log-format", "json", "--model-dir", str(model_dir), *args,
    ]  # fmt: skip
    state.mkdir(mode=0o700, parents=True)
    with (
        (state.parent / f"{state.name}.out").open("wb") as out,
        (state.parent / f"{state.name}.log").open("wb") as err,
    ):
        return subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL)


def _ready(state: Path) -> bool:
    socket_path = state / API_SOCKET_NAME
    if not socket_path.exists():
        return False
    transport = httpx.HTTPTransport(uds=str(socket_path))
    try:
        with httpx.Client(transport=transport, base_url="http://node", timeout=5) as client:
            return client.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def _wait_ready(state: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not _ready(state):
        if proc.poll() is not None:
            log = (state.parent / f"{state.name}.log").read_text(errors="replace")[-2000:]
            fail(f"node {state.name} exited with {proc.returncode}: {log}")
        if time.monotonic() > deadline:
            fail(f"node {state.name} was not ready within {READY_TIMEOUT_S:g} s")
        time.sleep(POLL_INTERVAL_S)


def _wait_members(state: Path, count: int) -> None:
    deadline = time.monotonic() + MEMBERS_TIMEOUT_S
    while True:
        members = api_get(state, "/v1/cluster/peers")["members"]
        if sum(1 for m in members if m["status"] == "alive") >= count:
            return
        if time.monotonic() > deadline:
            fail(f"the first node did not see {count} live members within {MEMBERS_TIMEOUT_S:g} s")
        time.sleep(POLL_INTERVAL_S)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in reversed(procs):
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def commit_even_placement(states: list[Path], model_dir: Path, say: Any) -> dict[str, Any]:
    """Commit the layers of ``model_dir`` split evenly over the nodes of ``states`` (in
    order) through the Raft log, proposed on the first node; return the committed
    placement (``vramancer.consensus.placement.v1``) once every node applied it."""
    config = json.loads((model_dir / "config.json").read_text())
    context = min(DEMO_CONTEXT_TOKENS, int(config.get("max_position_embeddings") or 1 << 24))
    node_ids = [api_get(state, "/v1/status")["node_id"] for state in states]
    body = {
        "model": str(model_dir), "context_tokens": context, "dtype": DEMO_DTYPE,
        "stages": even_stages(node_ids, int(config["num_hidden_layers"])),
    }  # fmt: skip
    placement: dict[str, Any] = api_post(states[0], "/v1/placement", body)
    say(
        f"committed placement epoch {placement['epoch']} through Raft (log index "
        f"{placement['log_index']}): {len(placement['stages'])} stage(s) over the nodes"
    )
    deadline = time.monotonic() + PLACEMENT_TIMEOUT_S
    for number, state in enumerate(states, start=1):
        while not any(
            p["model"] == placement["model"] and p["epoch"] >= placement["epoch"]
            for p in api_get(state, "/v1/placement")["placements"]
        ):
            if time.monotonic() > deadline:
                fail(f"node {number} did not apply the placement within {PLACEMENT_TIMEOUT_S:g} s")
            time.sleep(POLL_INTERVAL_S)
    say(f"every node applied epoch {placement['epoch']}")
    return placement


def _run(
    states: list[Path],
    model_dir: Path,
    prompt: list[int],
    max_tokens: int,
    temperature: float,
    top_k: int,
    top_p: float,
    seed: int,
    say: Any,
    json_out: bool,
) -> dict[str, Any]:
    driver, model_id = states[0], model_dir.name
    placement = commit_even_placement(states, model_dir, say)
    say("loading the stages (a one-token warm-up)")
    warm = {"model": model_id, "prompt_ids": prompt[:1], "max_tokens": 1}
    for _ in stream_generation(driver, warm):
        pass
    say(f"generating {max_tokens} tokens after prompt {prompt} from node 1")
    body = {
        "model": model_id, "prompt_ids": prompt, "max_tokens": max_tokens,
        "temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed,
    }  # fmt: skip
    done: dict[str, Any] = {}
    for event in stream_generation(driver, body):
        if event["event"] == "start" and event.get("epoch") != placement["epoch"]:
            fail(f"the generation ran under epoch {event.get('epoch')}, not the committed one")
        if event["event"] == "token" and not json_out:
            sys.stdout.write(f"{event['token_id']} ")
            sys.stdout.flush()
        elif event["event"] == "done":
            done = event
    members = api_get(driver, "/v1/cluster/peers")["members"]
    names = {m["node_id"]: m.get("name") for m in members}
    if not json_out:
        sys.stdout.write("\n\n")
        print_table(
            ("NODE", "NAME", "ADDRESS", "STATUS"),
            [[m["node_id"][:12], m.get("name"), m.get("address"), m["status"]] for m in members],
        )
        sys.stdout.write("\n")
        print_table(
            ("STAGE", "NODE", "NAME", "LAYERS", "EPOCH"),
            [
                [i, s["node_id"][:12], s.get("node_name") or names.get(s["node_id"]),
                 f"{s['first_layer']}-{s['last_layer_exclusive'] - 1}", placement["epoch"]]
                for i, s in enumerate(placement["stages"])
            ],
        )  # fmt: skip
        say(
            f"placement committed through Raft: epoch {placement['epoch']}, log index "
            f"{placement['log_index']}, method {placement.get('method')}"
        )
        timings = done.get("timings", {})
        say(
            f"first token {timings.get('time_to_first_token_s', 0):.3f} s, decode "
            f"{timings.get('decode_tokens_per_s') or 0:.1f} tokens/s, stage compute s "
            + " / ".join(f"{t:.3f}" for t in timings.get("stage_times_s_total", []))
        )
    return {
        "schema": "vramancer.demo.v1",
        "model": model_id,
        "prompt_ids": prompt,
        "token_ids": done.get("token_ids", []),
        "finish_reason": done.get("finish_reason"),
        "timings": done.get("timings", {}),
        "nodes": [{"node_id": m["node_id"], "name": m.get("name")} for m in members],
        "placement": placement,
        "placement_epoch": placement["epoch"],
    }
