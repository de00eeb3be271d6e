"""``vramancer weights``: the checkpoints this node holds, and fetching one from members.

Talks to the local node through its API (``GET /v1/weights``, ``POST
/v1/weights/fetch``).  ``fetch`` starts the download in the node and follows its
progress (a live line per file on a TTY), exiting 0 when every file is verified and 1
when the fetch failed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import typer

from cli.apiclient import api_get, api_post
from cli.common import (
    JSON_OPTION,
    STATE_DIR_OPTION,
    command_state_dir,
    fail,
    print_json,
    print_table,
)

__all__ = ["weights_app"]

MODEL_COLUMNS = ("MODEL", "SOURCE", "FILES", "SIZE", "MANIFEST")
POLL_INTERVAL_S = 0.5

weights_app = typer.Typer(
    help="Checkpoint files: what this node holds, and fetching from members.",
    invoke_without_command=True,
)


def _size(value: int) -> str:
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024:
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TiB"


@weights_app.callback()
def show(
    ctx: typer.Context,
    state_dir: Path | None = STATE_DIR_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """List the models this node holds (configured or fetched) and their manifests."""
    if ctx.invoked_subcommand is not None:
        return
    body = api_get(command_state_dir(ctx, state_dir), "/v1/weights")
    if json_out:
        print_json(body)
        return
    rows = [
        [
            model["model"],
            "configured" if model["configured"] else "fetched",
            model["files"],
            _size(model["bytes"]),
            model["manifest_sha256"][:16],
        ]
        for model in body.get("models", [])
    ]
    print_table(MODEL_COLUMNS, rows)


def _progress_line(status: dict[str, Any], model: str) -> str:
    parts = [
        f"{p['file']} {_size(p['bytes_done'])}/{_size(p['bytes_total'])}"
        for p in status.get("fetches", [])
        if p["model"] == model and p["bytes_done"] < p["bytes_total"]
    ]
    return f"fetching {model}: " + (", ".join(parts) or "...")


@weights_app.command()
def fetch(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Model id (a member's checkpoint directory name)."),
    files: list[str] = typer.Option(
        [], "--file", help="Fetch only this file (repeatable); default: every file."
    ),
    state_dir: Path | None = STATE_DIR_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Fetch MODEL's missing files from members: verified, resumable."""
    directory = command_state_dir(ctx, state_dir)
    request: dict[str, Any] = {"model": model, "wait": False}
    if files:
        request["files"] = files
    api_post(directory, "/v1/weights/fetch", request)
    live = sys.stderr.isatty() and not json_out
    while True:
        status = api_get(directory, "/v1/weights")
        job = next((j for j in status.get("jobs", []) if j["model"] == model), None)
        if job is None:
            fail(f"the node has no fetch of {model} in progress")
        if job["state"] != "running":
            break
        if live:
            sys.stderr.write("\r\x1b[2K" + _progress_line(status, model))
            sys.stderr.flush()
        time.sleep(POLL_INTERVAL_S)
    if live:
        sys.stderr.write("\r\x1b[2K")
    if job["state"] == "failed":
        fail(job["error"] or f"fetching {model} failed")
    held = next((m for m in status.get("models", []) if m["model"] == model), None)
    if json_out:
        print_json({"schema": "vramancer.weights.fetch.v1", **job, "model_info": held})
        return
    where = held["directory"] if held else "?"
    size = _size(held["bytes"]) if held else "?"
    sys.stdout.write(f"{model}: every file verified in {where} ({size})\n")
