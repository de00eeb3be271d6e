"""``vramancer placement``: the placements committed on the consensus log, and
proposing one; ``vramancer revoke``: revoke a member's certificate cluster-wide.

Both talk to the local node through its API (``/v1/placement``,
``/v1/revocations``); the node forwards to the Raft leader when it does not lead.
A model that fits nowhere is refused with the optimiser's message, which names the
memory shortfall (exit 1).

``propose --stages NODE:FIRST-LAST,...`` (layers inclusive, as the table shows them;
``NODE`` a node id, a unique prefix of one, or a member's name, optionally
``NODE/DEVICE``) or ``--split even`` (the layers split evenly over the live members
that are not draining, this node first) commits those stages instead of the
optimiser's plan (admins only; ``--force`` commits a stage that does not fit its
device's free memory).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer

from cli.apiclient import api_get, api_post
from cli.common import (
    JSON_OPTION,
    STATE_DIR_OPTION,
    command_state_dir,
    fail,
    print_fields,
    print_json,
    print_table,
)

__all__ = ["placement_app", "revoke"]

PLACEMENT_COLUMNS = ("MODEL", "EPOCH", "STAGE", "NODE", "DEVICE", "LAYERS", "MEMORY")
CONTEXT_TOKENS_DEFAULT = 4096
DTYPE_DEFAULT = "bf16"
SPLITS = ("even",)
UP_STATUSES = ("alive", "suspect")

placement_app = typer.Typer(
    help="Which node runs which layers: the placements committed by consensus.",
    invoke_without_command=True,
)


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
    _show(ctx, state_dir, json_out)


@placement_app.command("show")
def show_command(
    ctx: typer.Context,
    state_dir: Path | None = STATE_DIR_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Show the committed epoch and stages of every model (as `vramancer placement`)."""
    _show(ctx, state_dir, json_out)


def _show(ctx: typer.Context, state_dir: Path | None, json_out: bool) -> None:
    body = api_get(command_state_dir(ctx, state_dir), "/v1/placement")
    if json_out:
        print_json(body)
    else:
        print_table(PLACEMENT_COLUMNS, _rows(body["placements"]))


MODEL_DIR_ARGUMENT = typer.Argument(
    None,
    metavar="MODEL_DIR",
    help="Checkpoint directory (or its config.json) of the model.",
    show_default=False,
)
MODEL_OPTION = typer.Option(None, "--model", help="The same as MODEL_DIR.", show_default=False)


def _model(positional: Path | None, option: Path | None) -> Path:
    if positional is not None and option is not None and positional != option:
        fail("give the model once: MODEL_DIR or --model")
    model = positional if positional is not None else option
    if model is None:
        fail("which model? give MODEL_DIR (a checkpoint directory or its config.json)")
    return model


def even_stages(node_ids: Sequence[str], num_layers: int) -> list[dict[str, Any]]:
    """``num_layers`` split over ``node_ids`` in order (the first ones take one more;
    at most one stage per layer), as the ``stages`` of ``POST /v1/placement``."""
    if not node_ids or num_layers < 1:
        raise ValueError("an even split needs at least one node and one layer")
    nodes = list(node_ids)[:num_layers]
    base, extra = divmod(num_layers, len(nodes))
    stages, first = [], 0
    for position, node_id in enumerate(nodes):
        last = first + base + (1 if position < extra else 0)
        stages.append(
            {"node_id": node_id, "device_index": 0, "first_layer": first,
             "last_layer_exclusive": last}
        )  # fmt: skip
        first = last
    return stages


def parse_stage_spec(text: str) -> list[tuple[str, int, int, int]]:
    """``NODE[/DEVICE]:FIRST-LAST,...`` (layers inclusive) as ``(node, device, first,
    last_exclusive)``; ValueError naming the bad item."""
    items = []
    for item in (part.strip() for part in text.split(",")):
        node, sep, layers = item.rpartition(":")
        first, dash, last = layers.partition("-")
        node, slash, device = node.partition("/")
        try:
            numbers = (int(device) if slash else 0, int(first), int(last))
        except ValueError:
            numbers = None
        if not (sep and dash and node) or numbers is None or min(numbers) < 0:
            raise ValueError(f"{item!r} is not NODE[/DEVICE]:FIRST-LAST (layers inclusive)")
        if numbers[2] < numbers[1]:
            raise ValueError(f"{item!r}: the last layer comes before the first")
        items.append((node, numbers[0], numbers[1], numbers[2] + 1))
    return items


def resolve_node(name: str, members: Sequence[dict[str, Any]]) -> str:
    """The node id ``name`` means: a node id, a member's name, or a unique id prefix."""
    for member in members:
        if name in (member["node_id"], member.get("name")):
            return str(member["node_id"])
    matches = [m["node_id"] for m in members if m["node_id"].startswith(name)]
    if len(matches) != 1:
        known = ", ".join(sorted(str(m.get("name") or m["node_id"]) for m in members))
        problem = "matches several members" if matches else "is not a member this node knows"
        raise ValueError(f"{name!r} {problem} (members: {known})")
    return str(matches[0])


def _num_layers(model: Path) -> int:
    path = model if model.name == "config.json" else model / "config.json"
    try:
        layers = json.loads(path.read_text()).get("num_hidden_layers")
    except (OSError, ValueError, AttributeError) as exc:
        fail(f"cannot read num_hidden_layers from {path}: {exc}")
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        fail(f"{path}: num_hidden_layers must be a positive integer")
    return layers


def explicit_stages(
    state_dir: Path, model: Path, stages: str | None, split: str | None
) -> list[dict[str, Any]] | None:
    """The ``stages`` of the request body for ``--stages`` / ``--split`` (None: plan)."""
    if stages is None and split is None:
        return None
    if stages is not None and split is not None:
        fail("give --stages or --split, not both")
    members = api_get(state_dir, "/v1/cluster/peers")["members"]
    if split is not None:
        if split not in SPLITS:
            fail(f"--split must be one of {', '.join(SPLITS)}")
        live = [
            m["node_id"]
            for m in members
            if m["status"] in UP_STATUSES and not m.get("draining", False)
        ]
        return even_stages(live, _num_layers(model))
    assert stages is not None
    try:
        return [
            {"node_id": resolve_node(node, members), "device_index": device,
             "first_layer": first, "last_layer_exclusive": last}
            for node, device, first, last in parse_stage_spec(stages)
        ]  # fmt: skip
    except ValueError as exc:
        fail(f"--stages: {exc}")


@placement_app.command("apply")
def propose(
    ctx: typer.Context,
    model_dir: Path | None = MODEL_DIR_ARGUMENT,
    model_option: Path | None = MODEL_OPTION,
    context: int = typer.Option(
        CONTEXT_TOKENS_DEFAULT, "--context", min=1, help="Tokens of KV cache to reserve."
    ),
    dtype: str = typer.Option(DTYPE_DEFAULT, "--dtype", help="bf16, fp16, fp32 or auto."),
    stages: str | None = typer.Option(
        None,
        "--stages",
        help="Commit these stages instead of planning: NODE:FIRST-LAST,... in pipeline "
        "order, layers inclusive (NODE/DEVICE:FIRST-LAST for a device other than 0); "
        "NODE a node id, unique id prefix or member name.",
    ),
    split: str | None = typer.Option(
        None, "--split", help="Commit an 'even' split over the live members (this node first)."
    ),
    force: bool = typer.Option(
        False, "--force", help="With --stages/--split: commit even if a stage does not fit."
    ),
    state_dir: Path | None = STATE_DIR_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Plan MODEL_DIR (or take --stages / --split) and commit it as its next epoch."""
    model = _model(model_dir, model_option)
    directory = command_state_dir(ctx, state_dir)
    request: dict[str, Any] = {
        "model": str(model.resolve()), "context_tokens": context, "dtype": dtype,
    }  # fmt: skip
    explicit = explicit_stages(directory, model, stages, split)
    if explicit is not None:
        request["stages"] = explicit
        if force:
            request["force"] = True
    elif force:
        fail("--force applies to --stages or --split only")
    body = api_post(directory, "/v1/placement", request)
    if json_out:
        print_json(body)
        return
    tokens_per_s = body.get("tokens_per_s")
    typer.echo(
        f"committed {body['model']} epoch {body['epoch']}"
        + (f" ({body['method']})" if body.get("method") else "")
        + (f" (predicted {tokens_per_s:.1f} tokens/s)" if tokens_per_s else "")
    )
    print_table(PLACEMENT_COLUMNS, _rows([body]))


@placement_app.command("plan")
def plan(
    ctx: typer.Context,
    model_dir: Path | None = MODEL_DIR_ARGUMENT,
    model_option: Path | None = MODEL_OPTION,
    context: int = typer.Option(
        CONTEXT_TOKENS_DEFAULT, "--context", min=1, help="Tokens of KV cache to reserve."
    ),
    dtype: str = typer.Option(DTYPE_DEFAULT, "--dtype", help="bf16, fp16, fp32 or auto."),
    state_dir: Path | None = STATE_DIR_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Preview the placement of MODEL_DIR on the live members; commits nothing."""
    model = _model(model_dir, model_option)
    body = api_post(
        command_state_dir(ctx, state_dir),
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


placement_app.command("propose", help="The same as `apply`.")(propose)


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
        command_state_dir(ctx, state_dir), "/v1/revocations", {"node_id": node_id, "reason": reason}
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
