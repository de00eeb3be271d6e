"""Draining a node: the operator's switch that moves its stages elsewhere.

Theory of operation
-------------------
Every member gossips a ``drain`` flag in its record (:mod:`protocol.membership.record`).
A draining member takes no new stages (:mod:`protocol.placement.snapshot` leaves it
out of every plan) and, because the Raft leader counts it as not up when it looks
for stranded stages (:mod:`vramancer_node.consensus.placementwiring`), the stages it
holds are re-planned onto the others within one re-plan interval.  The node itself
keeps running: it still gossips, votes, forwards and answers the API, so an operator
can wait for ``vramancer placement`` to show nothing on it before stopping it.

This module is the switch:

* ``POST /v1/drain`` ``{"drain": true|false}`` sets the flag of the local record
  (``gossip.update_local(drain=...)``: a new record version, gossiped like any
  change) and answers ``vramancer.drain.v1`` ``{node_id, draining, changed}``;
  anything but a JSON object with a boolean ``drain`` is 400, a node whose
  membership has not started yet answers 503.
* The flag is kept in ``<state-dir>/drain`` (:func:`vramancer_node.atomic.atomic_write`,
  written before the gossip changes), so a drained node that restarts — a crash, an
  upgrade, a reboot — comes back drained until an operator undrains it: the daemon
  builds its first record from :func:`read_drain`.

Error handling
--------------
The file holds ``{"schema": "vramancer.drain.v1", "drain": bool}``.  A file the node
cannot read or parse (edited by hand, a disk error) is taken as *draining*, with a
warning naming the file: a node that may have been drained should not quietly take
stages again.  ``vramancer drain --off`` rewrites it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vramancer_node.atomic import atomic_write
from vramancer_node.audit import kinds
from vramancer_node.layout import DRAIN_FILE_NAME
from vramancer_node.logs import get_logger

if TYPE_CHECKING:
    from vramancer_node.membership import MembershipService

log = get_logger("drain")

DRAIN_SCHEMA = "vramancer.drain.v1"
"""Schema of the API answer and of the file."""
DRAIN_FILE_BYTES_MAX = 4096
"""A larger file is not ours: it is taken as draining (see the module docstring)."""


class DrainRequestError(ValueError):
    """The caller sent something other than ``{"drain": true|false}`` (HTTP 400)."""


def drain_path(state_dir: Path) -> Path:
    return Path(state_dir) / DRAIN_FILE_NAME


def read_drain(state_dir: Path) -> bool:
    """The persisted flag: False when no file exists, True when it cannot be read."""
    path = drain_path(state_dir)
    try:
        with path.open("rb") as file:
            raw = file.read(DRAIN_FILE_BYTES_MAX + 1)
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.warning(
            "cannot read the drain flag: draining", extra={"path": str(path), "detail": str(exc)}
        )
        return True
    try:
        if len(raw) > DRAIN_FILE_BYTES_MAX:
            raise ValueError(f"larger than {DRAIN_FILE_BYTES_MAX} bytes")
        return parse_drain(json.loads(raw))
    except (ValueError, UnicodeDecodeError) as exc:
        log.warning(
            "the drain flag file is malformed: draining until `vramancer drain --off`",
            extra={"path": str(path), "detail": str(exc)},
        )
        return True


def write_drain(state_dir: Path, drain: bool) -> None:
    """Persist the flag atomically and durably (blocking: call it from a thread)."""
    document = {"schema": DRAIN_SCHEMA, "drain": drain}
    atomic_write(drain_path(state_dir), json.dumps(document).encode() + b"\n")


def parse_drain(body: object) -> bool:
    """``{"drain": true|false}`` -> the flag; :class:`DrainRequestError` otherwise."""
    if not isinstance(body, dict):
        raise DrainRequestError("the request body must be a JSON object")
    unknown = sorted(set(body) - {"drain", "schema"})
    if unknown:
        raise DrainRequestError(f'unknown field(s) {unknown}: the body is {{"drain": true|false}}')
    drain = body.get("drain")
    if not isinstance(drain, bool):
        raise DrainRequestError(f"drain must be true or false, got {drain!r}")
    return drain


def is_draining(gossip: MembershipService | None, state_dir: Path) -> bool:
    """Whether this node drains: its gossiped record, else (not started) the file."""
    return gossip.core.local.drain if gossip is not None else read_drain(state_dir)


def with_draining(gossip: MembershipService) -> list[dict[str, Any]]:
    """The gossip's peers view, each member with its ``draining`` flag."""
    flags = {m.record.node_id: m.record.drain for m in gossip.core.members()}
    flags[gossip.core.local.node_id] = gossip.core.local.drain
    return [{**row, "draining": flags.get(row["node_id"], False)} for row in gossip.peers_view()]


async def set_draining(gossip: MembershipService, state_dir: Path, drain: bool) -> bool:
    """Persist ``drain``, then gossip it; True when the flag changed."""
    changed = gossip.core.local.drain != drain
    await trio.to_thread.run_sync(write_drain, state_dir, drain)
    if changed:
        gossip.update_local(drain=drain)
        log.info("drain flag changed", extra={"draining": drain})
    return changed


def _error(status_code: int, message: str) -> JSONResponse:
    return JSONResponse({"schema": "vramancer.error.v1", "error": message}, status_code=status_code)


def drain_routes(node: Any) -> list[Route]:
    """``POST /v1/drain`` for ``node`` (a :class:`vramancer_node.daemon.Node`)."""

    async def drain(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the request body is not JSON")
        try:
            flag = parse_drain(body)
        except DrainRequestError as exc:
            return _error(400, str(exc))
        gossip = node.gossip
        if gossip is None:
            return _error(503, "membership has not started yet")
        try:
            changed = await set_draining(gossip, node.state_dir, flag)
        except OSError as exc:
            return _error(500, f"cannot persist the drain flag in {node.state_dir}: {exc}")
        if changed and node.audit is not None:
            body = {"node_id": node.identity.node_id, "draining": flag}
            await node.audit.append(kinds.DRAIN_CHANGED, body)
        answer = {"node_id": node.identity.node_id, "draining": flag, "changed": changed}
        return JSONResponse({"schema": DRAIN_SCHEMA, **answer})

    return [Route("/v1/drain", drain, methods=["POST"])]
