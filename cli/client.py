"""``vramancer``: talk to the node running on this machine, through its API socket."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NoReturn

import typer

from cli.apiclient import api_get, api_post
from cli.audit import audit_app
from cli.common import (
    EXIT_NO_MATCH,
    EXIT_OK,
    JSON_OPTION,
    STATE_DIR_OPTION,
    fail,
    parse_duration_s,
    print_fields,
    print_json,
    print_table,
    resolve_state_dir,
    run_app,
)
from cli.drain import drain
from cli.generate import generate
from cli.placement import placement_app, revoke
from cli.weights import weights_app
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
    return local if local is not None else ctx.obj


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
            ("serial", body.get("serial")),
            ("roles", body.get("roles")),
            ("listening", body.get("listening")),
            ("draining", body.get("draining")),
            ("consensus", _consensus_line(body.get("consensus"))),
            ("peers", body.get("peers")),
            ("public_key", body.get("public_key")),
        ]
    )


def _consensus_line(view: dict[str, Any] | None) -> str | None:
    if not view or "term" not in view:
        return None if not view else str(view.get("role"))
    leader = (view.get("leader") or "none")[:12]
    voters, learners = len(view.get("voters") or []), len(view.get("learners") or [])
    return (
        f"{view['role']}, term {view['term']}, leader {leader}, commit {view['commit_index']},"
        f" {voters} voter(s), {learners} learner(s)"
    )


PEER_COLUMNS = (
    "NODE",
    "NAME",
    "ADDRESS",
    "STATUS",
    "ROLES",
    "DEVICES",
    "MEM FREE/TOTAL",
    "RTT",
    "VERSION",
)


@app.command()
def peers(
    ctx: typer.Context,
    status_filter: str | None = typer.Option(
        None,
        "--status",
        help="Only members whose status matches this regex (alive|suspect|dead|left, and "
        "draining for members that asked to be drained, e.g. 'draining' or 'alive$').",
    ),
    state_dir: Path | None = STATE_DIR_OPTION,
    json_out: bool = JSON_OPTION,
) -> int:
    """The members of the cluster as this node sees them."""
    pattern = None
    if status_filter is not None:
        try:
            pattern = re.compile(status_filter)
        except re.error as exc:
            fail(f"--status: not a regular expression: {exc}")
    body = api_get(_state_dir(ctx, state_dir), "/v1/cluster/peers")
    members = body["members"]
    if pattern is not None:
        members = [m for m in members if pattern.search(_status_text(m))]
    if json_out:
        print_json({**body, "members": members})
    else:
        print_table(PEER_COLUMNS, [_peer_row(m) for m in members])
    if pattern is not None and not members:
        return EXIT_NO_MATCH
    return EXIT_OK


def _status_text(member: dict[str, Any]) -> str:
    """The STATUS column: ``alive``, or ``alive,draining`` for a member being drained."""
    return member["status"] + (",draining" if member.get("draining") else "")


def _bytes(value: int | None) -> str:
    if value is None:
        return "-"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024:
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TiB"


def _peer_row(member: dict[str, Any]) -> list[Any]:
    devices = member.get("devices") or []
    kinds = ",".join(sorted({f"{d['kind']}" for d in devices})) or "-"
    rtt = member.get("rtt_s")
    return [
        member["node_id"][:12],
        member.get("name") or "-",
        member.get("address"),
        _status_text(member) + (" (self)" if member.get("local") else ""),
        ",".join(member.get("roles") or []) or "-",
        f"{len(devices)} {kinds}" if devices else "-",
        f"{_bytes(member.get('memory_free_bytes'))} / {_bytes(member.get('memory_total_bytes'))}",
        "-" if rtt is None else f"{rtt * 1000:.1f} ms",
        member.get("version") or "-",
    ]


token_app = typer.Typer(help="Join tokens for new nodes.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(audit_app, name="audit")
app.add_typer(placement_app, name="placement")
app.add_typer(weights_app, name="weights")
app.command("revoke")(revoke)
app.command("generate")(generate)
app.command("drain")(drain)


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    ttl: str = typer.Option("1h", "--ttl", help="Lifetime: 90s, 15m, 1h, 7d."),
    uses: int = typer.Option(1, "--uses", min=1, help="How many nodes may join with it."),
    state_dir: Path | None = STATE_DIR_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Create a join token on this node (it must be a cluster admin)."""
    try:
        ttl_s = parse_duration_s(ttl)
    except ValueError as exc:
        fail(f"--ttl: {exc}")
    body = api_post(_state_dir(ctx, state_dir), "/v1/tokens", {"ttl_s": ttl_s, "uses": uses})
    if json_out:
        print_json(body)
        return
    print_fields(
        [
            ("token", body["token"]),
            ("token_id", body.get("token_id")),
            ("uses", body.get("uses")),
            ("expires", _utc(body.get("expires_at"))),
        ]
    )


def _utc(timestamp: int | None) -> str | None:
    if timestamp is None:
        return None
    from datetime import datetime, timezone

    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


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
