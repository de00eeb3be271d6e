"""``vramancer generate``: stream a generation from the cluster through the local node.

The node's ``POST /v1/generate`` answers JSON lines (``vramancer.generate.v1``): a
``start`` event (epoch, stages), one ``token`` event per token (with each stage's
compute time), then ``done`` (token ids, text, timings) or ``error``.  On a TTY the
text streams with a live status line (tokens/s and per-stage times); piped, the text
(or the token ids) is printed as it comes and the timings go to stderr; ``--json``
prints one document at the end.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.live import Live
from rich.text import Text

from cli.common import JSON_OPTION, STATE_DIR_OPTION, fail, print_json, resolve_state_dir
from vramancer_node.layout import API_SOCKET_NAME

CONNECT_TIMEOUT_S = 10.0
SCHEMA = "vramancer.generate.v1"


def parse_ids(text: str) -> list[int]:
    """``1,2,3`` -> ``[1, 2, 3]`` (ValueError naming the bad item)."""
    ids = []
    for item in text.replace(" ", "").split(","):
        if not item.isdigit():
            raise ValueError(f"{item!r} is not a token id (non-negative integer)")
        ids.append(int(item))
    return ids


def stream_generation(state_dir: Path, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """POST ``body`` to ``/v1/generate`` and yield each event; errors exit 1."""
    socket_path = state_dir / API_SOCKET_NAME
    if not socket_path.exists():
        fail(f"no node is running with state dir {state_dir} ({socket_path} does not exist)")
    transport = httpx.HTTPTransport(uds=str(socket_path))
    timeout = httpx.Timeout(CONNECT_TIMEOUT_S, read=None)
    try:
        with (
            httpx.Client(
                transport=transport, base_url="http://vramancer-node", timeout=timeout
            ) as client,
            client.stream("POST", "/v1/generate", json=body) as response,
        ):
            if response.status_code != 200:
                response.read()
                try:
                    detail = response.json().get("error")
                except ValueError:
                    detail = None
                fail(detail or f"the node answered {response.status_code} to /v1/generate")
            for line in response.iter_lines():
                if line.strip():
                    event = json.loads(line)
                    if event.get("event") == "error":
                        fail(f"generation failed: {event.get('error')}")
                    yield event
    except httpx.ConnectError as exc:
        fail(f"no node is answering on {socket_path} ({exc}); is vramancer-node running?")
    except httpx.HTTPError as exc:
        fail(f"request to the node on {socket_path} failed: {exc}")


def generate(
    ctx: typer.Context,
    prompt: str | None = typer.Argument(None, help="The prompt text (needs the tokenizer)."),
    model: str = typer.Option(..., "--model", help="Model id (a checkpoint directory name)."),
    prompt_ids: str | None = typer.Option(
        None, "--prompt-ids", help="The prompt as token ids, e.g. 1,2,3 (instead of text)."
    ),
    max_tokens: int = typer.Option(64, "--max-tokens", help="Most tokens to generate."),
    temperature: float = typer.Option(0.0, "--temperature", help="0: greedy."),
    top_k: int = typer.Option(0, "--top-k", help="Keep the k most likely tokens; 0: all."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling mass; 1: all."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    state_dir: Path | None = STATE_DIR_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Generate with a model across the cluster, streaming the tokens."""
    if (prompt is None) == (prompt_ids is None):
        fail("give either a PROMPT or --prompt-ids 1,2,3")
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "top_k": top_k,
        "top_p": top_p,
        "seed": seed,
    }
    if prompt_ids is not None:
        try:
            body["prompt_ids"] = parse_ids(prompt_ids)
        except ValueError as exc:
            fail(f"--prompt-ids: {exc}")
    else:
        body["prompt"] = prompt
    state = state_dir if state_dir is not None else ctx.obj
    events = stream_generation(resolve_state_dir(state), body)
    if json_out:
        _print_document(events)
    elif sys.stdout.isatty():
        _live(events)
    else:
        _plain(events)


def _print_document(events: Iterator[dict[str, Any]]) -> None:
    start: dict[str, Any] = {}
    for event in events:
        if event["event"] == "start":
            start = event
        elif event["event"] == "done":
            document = {
                "schema": SCHEMA,
                "model": start.get("model"),
                "epoch": start.get("epoch"),
                "stages": start.get("stages"),
                "prompt_tokens": start.get("prompt_tokens"),
                "token_ids": event["token_ids"],
                "finish_reason": event["finish_reason"],
                "timings": event["timings"],
            }
            if "text" in event:
                document["text"] = event["text"]
            print_json(document)


def _piece(event: dict[str, Any]) -> str:
    return str(event["text"]) if "text" in event else f"{event['token_id']} "


def _status_line(tokens: int, started_s: float, stage_ms: list[float]) -> str:
    elapsed_s = max(time.perf_counter() - started_s, 1e-9)
    stages = " / ".join(f"{ms:.1f}" for ms in stage_ms) or "-"
    return f"{tokens} tokens · {tokens / elapsed_s:.1f} tok/s · stage ms/token {stages}"


def _live(events: Iterator[dict[str, Any]]) -> None:
    console = Console()
    text, tokens, started_s = Text(), 0, time.perf_counter()
    stage_total_s: list[float] = []
    with Live(text, console=console, refresh_per_second=8) as live:
        for event in events:
            if event["event"] == "start":
                stages = ", ".join(node[:12] for node in event["stages"])
                console.print(f"[dim]epoch {event['epoch']} · stages {stages}[/dim]")
            elif event["event"] == "token":
                tokens += 1
                times = event["stage_times_s"]
                stage_total_s = [
                    (stage_total_s[i] if i < len(stage_total_s) else 0.0) + t
                    for i, t in enumerate(times)
                ]
                text.append(_piece(event))
                stage_ms = [1000 * t / tokens for t in stage_total_s]
                status = _status_line(tokens, started_s, stage_ms)
                live.update(Text.assemble(text, "\n", (status, "dim")))
            elif event["event"] == "done":
                timings = event["timings"]
                console.print(f"[dim]{_summary(timings)}[/dim]")


def _plain(events: Iterator[dict[str, Any]]) -> None:
    for event in events:
        if event["event"] == "token":
            sys.stdout.write(_piece(event))
            sys.stdout.flush()
        elif event["event"] == "done":
            sys.stdout.write("\n")
            sys.stderr.write(_summary(event["timings"]) + "\n")


def _summary(timings: dict[str, Any]) -> str:
    rate = timings.get("decode_tokens_per_s")
    stages = " / ".join(f"{s:.3f}" for s in timings.get("stage_times_s_total", []))
    return (
        f"first token {timings['time_to_first_token_s']:.3f} s · decode "
        f"{'-' if rate is None else f'{rate:.1f}'} tok/s · stage compute s {stages}"
    )
