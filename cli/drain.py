"""``vramancer drain [--off]``: move this node's stages elsewhere before it leaves.

The local node sets its gossiped ``drain`` flag (``POST /v1/drain``) and keeps it
across restarts; the Raft leader then re-plans every placement with a stage on it,
and no new placement uses it.  ``--off`` clears the flag.  The command returns at
once: ``vramancer placement`` shows when no stage is left on the node (see
docs/operations.md, "Drain and leave").
"""

from __future__ import annotations

from pathlib import Path

import typer

from cli.apiclient import api_post
from cli.common import JSON_OPTION, STATE_DIR_OPTION, print_fields, print_json, resolve_state_dir

__all__ = ["drain"]


def drain(
    ctx: typer.Context,
    off: bool = typer.Option(False, "--off", help="Undrain: the node may take stages again."),
    state_dir: Path | None = STATE_DIR_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Drain this node (its stages move to other members), or undrain it with --off."""
    parent = ctx.find_root().obj
    state = state_dir or (parent if isinstance(parent, Path) else resolve_state_dir(None))
    body = api_post(state, "/v1/drain", {"drain": not off})
    if json_out:
        print_json(body)
        return
    print_fields(
        [
            ("node_id", body.get("node_id")),
            ("draining", body.get("draining")),
            ("changed", body.get("changed")),
        ]
    )
    if body.get("draining"):
        typer.echo(
            "stages move off within the leader's re-plan interval;"
            " `vramancer placement` shows when none is left here",
            err=True,
        )
