"""``vramancer``: talk to the node running on this machine, through its API socket."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer

from cli.apiclient import api_get
from cli.common import (
    JSON_OPTION,
    STATE_DIR_OPTION,
    print_fields,
    print_json,
    resolve_state_dir,
    run_app,
)
from vramancer_node import PROTOCOL_VERSION, __version__

app = typer.Typer(
    help="Inspect and drive the VRAMancer cluster from any member.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # a traceback's locals may hold secrets
)


@app.callback()
def _options(
    ctx: typer.Context,
    state_dir: Path | None = STATE_DIR_OPTION,
) -> None:
    """Common options go before the command: `vramancer --state-dir D status`."""
    ctx.obj = resolve_state_dir(state_dir)


def _state_dir(ctx: typer.Context, local: Path | None) -> Path:
    return local if local is not None else ctx.obj  # type: ignore[no-any-return]


@app.command()
def status(
    ctx: typer.Context,
    state_dir: Path | None = STATE_DIR_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Show the local node: id, state, uptime, version."""
    body = api_get(_state_dir(ctx, state_dir), "/v1/status")
    if json_out:
        print_json(body)
        return
    print_fields(
        [
            ("node_id", body.get("node_id")),
            ("name", body.get("name")),
            ("state", body.get("state")),
            ("uptime", f"{body.get('uptime_s', 0):.1f} s"),
            ("version", f"{body.get('version')} (protocol {body.get('protocol_version')})"),
            ("cluster_id", body.get("cluster_id")),
            ("listen", body.get("listen")),
            ("peers", body.get("peers")),
            ("public_key", body.get("public_key")),
        ]
    )


@app.command()
def version(
    ctx: typer.Context,
    state_dir: Path | None = STATE_DIR_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Show the client's version, and the local node's when one is running."""
    from vramancer_node.layout import API_SOCKET_NAME

    state = _state_dir(ctx, state_dir)
    node = api_get(state, "/v1/status") if (state / API_SOCKET_NAME).exists() else None
    body = {
        "schema": "vramancer.version.v1",
        "version": __version__,
        "protocol_version": PROTOCOL_VERSION,
        "node_version": node.get("version") if node else None,
    }
    if json_out:
        print_json(body)
    else:
        typer.echo(f"vramancer {__version__} (protocol {PROTOCOL_VERSION})")
        if node:
            typer.echo(f"node      {node.get('version')} (protocol {node.get('protocol_version')})")


def main(argv: list[str] | None = None) -> NoReturn:
    run_app(app, "vramancer", argv)
