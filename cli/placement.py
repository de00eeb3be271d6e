"""``vramancer placement``: the placements committed on the consensus log, and
proposing one; ``vramancer revoke``: revoke a member's certificate cluster-wide.

Both talk to the local node through its API (``/v1/placement``,
``/v1/revocations``); the node forwards to the Raft leader when it does not lead.
A model that fits nowhere is refused with the optimiser's message, which names the
memory shortfall (exit 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cli.apiclient import api_get, api_post
from cli.common import (
    JSON_OPTION,
    STATE_DIR_OPTION,
    fail,
    print_fields,
    print_json,
    print_table,
    resolve_state_dir,
)

__all__ = ["placement_app", "revoke"]

PLACEMENT_COLUMNS = ("MODEL", "EPOCH", "STAGE", "NODE", "DEVICE", "LAYERS", "MEMORY")
CONTEXT_TOKENS_DEFAULT = 4096
DTYPE_DEFAULT = "bf16"

placement_app = typer.Typer(
    help="Which node runs which layers: the placements committed by consensus.",
    invoke_without_command=True,
)


def _state_dir(ctx: typer.Context, local: Path | None) -> Path:
    if local is not None:
        return local
    parent = ctx.find_root().obj
    return parent if isinstance(parent, Path) else resolve_state_dir(None)


def _memory(value: int | None) -> str:
    if not value:
        return "-"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024:
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TiB"


def _rows(placements: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for placement in placements:
        for number, stage in enumerate(placement["stages"]):
            node = stage.get("node_name") or stage["node_id"][:12]
            rows.append(
                [
                    placement["model"],
                    placement["epoch"],
                    number,
                    node,
                    stage["device_index"],
                    f"{stage['first_layer']}-{stage['last_layer_exclusive'] - 1}",
                    _memory(stage.get("memory_bytes")),
                ]
            )
    return rows


@placement_app.callback()
def show(
    ctx: typer.Context,
    state_dir: Path | None = STATE_DIR_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Show the committed placement of every model (or run a subcommand)."""
    if ctx.invoked_subcommand is not None:
        return
    body = api_get(_state_dir(ctx, state_dir), "/v1/placement")
    if json_out:
        print_json(body)
    else:
        print_table(PLACEMENT_COLUMNS, _rows(body["placements"]))


@placement_app.command("propose")
def propose(
    ctx: typer.Context,
    model: Path = typer.Option(
        ..., "--model", help="Checkpoint directory (or its config.json) of the model."
    ),
    context: int = typer.Option(
        CONTEXT_TOKENS_DEFAULT, "--context", min=1, help="Tokens of KV cache to reserve."
    ),
    dtype: str = typer.Option(DTYPE_DEFAULT, "--dtype", help="bf16, fp16, fp32 or auto."),
    state_dir: Path | None = STATE_DIR_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Plan MODEL on the live members and commit it as the model's next epoch."""
    body = api_post(
        _state_dir(ctx, state_dir),
        "/v1/placement",
        {"model": str(model.resolve()), "context_tokens": context, "dtype": dtype},
    )
    if json_out:
        print_json(body)
        return
    tokens_per_s = body.get("tokens_per_s")
    typer.echo(
        f"committed {body['model']} epoch {body['epoch']}"
        + (f" (predicted {tokens_per_s:.1f} tokens/s)" if tokens_per_s else "")
    )
    print_table(PLACEMENT_COLUMNS, _rows([body]))


@placement_app.command("plan")
def plan(
    ctx: typer.Context,
    model: Path = typer.Option(
        ..., "--model", help="Checkpoint directory (or its config.json) of the model."
    ),
    context: int = typer.Option(
        CONTEXT_TOKENS_DEFAULT, "--context", min=1, help="Tokens of KV cache to reserve."
    ),
    dtype: str = typer.Option(DTYPE_DEFAULT, "--dtype", help="bf16, fp16, fp32 or auto."),
    state_dir: Path | None = STATE_DIR_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Preview the placement of MODEL on the live members; commits nothing."""
    body = api_post(
        _state_dir(ctx, state_dir),
        "/v1/placement/plan",
        {"model": str(model.resolve()), "context_tokens": context, "dtype": dtype},
    )
    if json_out:
        print_json(body)
        return
    tokens_per_s = body.get("tokens_per_s")
    verdict = f"would commit epoch {body['epoch']}" if body["changes"] else "keeps epoch"
    typer.echo(
        f"{body['model']}: {verdict}"
        + (f" {body['epoch']}" if not body["changes"] else "")
        + (f" (predicted {tokens_per_s:.1f} tokens/s)" if tokens_per_s else "")
    )
    print_table(PLACEMENT_COLUMNS, _rows([body]))


def revoke(
    ctx: typer.Context,
    node_id: str = typer.Argument(..., help="Node id of the member to revoke."),
    reason: str = typer.Option("", "--reason", help="Why (kept in the log and audit trail)."),
    state_dir: Path | None = STATE_DIR_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Revoke a member's certificate cluster-wide (run on an admin node)."""
    if not node_id.strip():
        fail("NODE_ID must not be empty")
    body = api_post(
        _state_dir(ctx, state_dir), "/v1/revocations", {"node_id": node_id, "reason": reason}
    )
    if json_out:
        print_json(body)
        return
    print_fields(
        [
            ("revoked", body.get("node_id")),
            ("serial", body.get("serial")),
            ("log_index", body.get("log_index")),
        ]
    )
