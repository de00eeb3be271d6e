"""``vramancer audit``: read, prove and verify the node's audit log.

When the node of ``--state-dir`` answers on its API socket, every command asks it
(``/v1/audit/...``).  When it does not — the node is stopped — ``tail``, ``verify``,
``export`` and ``proof`` read the LMDB files themselves, read-only
(:func:`vramancer_node.audit.open_readonly`: nothing is created or written, and a
running daemon is detected through its lock file and refused).  Offline, ``verify``
also checks the log's key against the node's key file when that file is not sealed,
and ``proof`` can only prove records that a stored checkpoint already covers.

Exit codes follow :mod:`cli.common`: 0 ok, 1 error — including a log that does not
verify, reported as one line on stderr naming the first bad record.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import typer

from cli.common import (
    JSON_OPTION,
    STATE_DIR_OPTION,
    fail,
    print_fields,
    print_json,
    print_table,
    resolve_state_dir,
    run_app,
)
from crypto.identity import IdentityError, decode_key_file, is_sealed
from vramancer_node.audit.documents import (
    TAIL_RECORDS_MAX,
    export_documents,
    proof_document,
    tail_document,
)
from vramancer_node.audit.errors import AuditStoreError
from vramancer_node.audit.store import open_readonly
from vramancer_node.audit.verify import verify_log
from vramancer_node.audit.view import LogView
from vramancer_node.layout import API_SOCKET_NAME, KEY_FILE_NAME

__all__ = ["audit_app", "main"]

PROBE_TIMEOUT_S = 2.0
"""How long to wait for the API socket to accept before reading the files instead."""
TAIL_RECORDS_DEFAULT = 20

audit_app = typer.Typer(
    help="The node's signed, hash-chained audit log.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _api_get(state_dir: Path, path: str) -> Any:
    # Imported here: reading a stopped node's files should not pay for httpx.
    from cli.apiclient import api_get

    return api_get(state_dir, path)


def _state_dir(ctx: typer.Context, local: Path | None) -> Path:
    if local is not None:
        return local
    # `vramancer --state-dir D audit ...`: the parent app put it in the context.
    return ctx.obj if isinstance(ctx.obj, Path) else resolve_state_dir(None)


def _node_answers(state_dir: Path) -> bool:
    """Whether a daemon accepts connections on the API socket of ``state_dir``."""
    path = state_dir / API_SOCKET_NAME
    if not path.exists():
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT_S)
    try:
        probe.connect(str(path))
    except OSError:
        return False  # a stale socket left by a node that died
    finally:
        probe.close()
    return True


@contextmanager
def _offline_view(state_dir: Path) -> Iterator[LogView]:
    try:
        with open_readonly(state_dir) as reader, reader.view() as view:
            yield view
    except AuditStoreError as exc:
        fail(str(exc))


def _key_file_public_key(state_dir: Path) -> bytes | None:
    """The node's public key from its key file, when it is there and not sealed."""
    try:
        data = (state_dir / KEY_FILE_NAME).read_bytes()
        if is_sealed(data):
            return None
        return decode_key_file(data).public_key
    except (OSError, IdentityError):
        return None


@audit_app.command()
def tail(
    ctx: typer.Context,
    lines: int = typer.Option(
        TAIL_RECORDS_DEFAULT, "-n", "--lines", min=1, max=TAIL_RECORDS_MAX, help="How many."
    ),
    state_dir: Path | None = STATE_DIR_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Show the last records of the audit log."""
    state = _state_dir(ctx, state_dir)
    if _node_answers(state):
        body = _api_get(state, f"/v1/audit/tail?n={lines}")
    else:
        with _offline_view(state) as view:
            body = tail_document(view, lines)
    if json_out:
        print_json(body)
        return
    records = body.get("records", [])
    if not records:
        typer.echo("the audit log is empty")
        return
    print_table(
        ["SEQ", "TIME (UTC)", "KIND", "DETAILS"],
        [(r["seq"], _utc_ms(r["time_ms"]), r["kind"], _details(r["body"])) for r in records],
    )


@audit_app.command()
def verify(
    ctx: typer.Context,
    state_dir: Path | None = STATE_DIR_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Verify signatures, the hash chain, the Merkle tree and every checkpoint."""
    state = _state_dir(ctx, state_dir)
    if _node_answers(state):
        body = _api_get(state, "/v1/audit/verify")
    else:
        with _offline_view(state) as view:
            body = verify_log(view, public_key=_key_file_public_key(state)).to_json()
    if json_out:
        print_json(body)
    elif body.get("ok"):
        checkpoint = body.get("checkpoint") or {}
        print_fields(
            [
                ("status", "ok"),
                ("node_id", body.get("node_id")),
                ("origin", body.get("origin")),
                ("records", body.get("records")),
                ("checkpoint", checkpoint.get("size")),
                ("root_hash", checkpoint.get("root_hash")),
                ("cosigned_by", checkpoint.get("cosigned_by")),
                ("uncovered", body.get("uncovered_records")),
            ]
        )
    if not body.get("ok"):
        fail(f"the audit log does not verify: {body.get('reason')}")


@audit_app.command()
def proof(
    ctx: typer.Context,
    seq: int = typer.Argument(..., min=0, help="Seq of the record to prove."),
    state_dir: Path | None = STATE_DIR_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Prove that a record is in the log: an RFC 6962 inclusion proof against the
    latest checkpoint."""
    state = _state_dir(ctx, state_dir)
    if _node_answers(state):
        body = _api_get(state, f"/v1/audit/proof/{seq}")
    else:
        with _offline_view(state) as view:
            body = _offline_proof(view, seq)
    if json_out:
        print_json(body)
        return
    print_fields(
        [
            ("seq", body["seq"]),
            ("kind", body["record"]["kind"]),
            ("record_hash", body["record"]["hash"]),
            ("leaf_hash", body["leaf_hash"]),
            ("tree_size", body["tree_size"]),
            ("root_hash", body["root_hash"]),
            ("inclusion_proof", body["inclusion_proof"]),
            ("signed_by", body["signed_by"]),
        ]
    )


def _offline_proof(view: LogView, seq: int) -> dict[str, Any]:
    size = view.size
    if seq >= size:
        fail(f"no record {seq}: the audit log holds {size} records")
    latest = view.latest_checkpoint()
    if latest is None or latest.size <= seq:
        fail(f"record {seq} is not covered by a checkpoint yet; start the node to sign one")
    return proof_document(view, seq, latest)


@audit_app.command()
def export(
    ctx: typer.Context,
    state_dir: Path | None = STATE_DIR_OPTION,
) -> None:
    """Write the whole log as JSON lines: a header, every record, the latest checkpoint."""
    state = _state_dir(ctx, state_dir)
    try:
        if _node_answers(state):
            _stream_export(state)
        else:
            with _offline_view(state) as view:
                for document in export_documents(view):
                    sys.stdout.write(json.dumps(document, separators=(",", ":")) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # `vramancer audit export | head`: the reader left; that is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _stream_export(state_dir: Path) -> None:
    """Copy the node's JSON-lines export to stdout as it arrives (api_request would
    parse the body as one JSON document, which JSON lines are not)."""
    import httpx

    from cli.apiclient import REQUEST_TIMEOUT_S

    socket_path = state_dir / API_SOCKET_NAME
    transport = httpx.HTTPTransport(uds=str(socket_path))
    try:
        with (
            httpx.Client(
                transport=transport, base_url="http://vramancer-node", timeout=REQUEST_TIMEOUT_S
            ) as client,
            client.stream("GET", "/v1/audit/export") as response,
        ):
            if response.status_code != 200:
                response.read()
                fail(_error_of(response))
            for line in response.iter_lines():
                sys.stdout.write(line + "\n")
    except httpx.TimeoutException:
        fail(f"the node on {socket_path} did not answer within {REQUEST_TIMEOUT_S:g} s")
    except httpx.HTTPError as exc:
        fail(f"exporting from the node on {socket_path} failed: {exc}")


def _error_of(response: Any) -> str:
    try:
        detail = response.json().get("error")
    except (ValueError, AttributeError):
        detail = None
    return str(detail or f"the node answered {response.status_code} to GET /v1/audit/export")


def _utc_ms(time_ms: int) -> str:
    moment = datetime.fromtimestamp(time_ms / 1000, timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _details(body: dict[str, Any]) -> str:
    def show(value: Any) -> str:
        if isinstance(value, list):
            return ",".join(show(item) for item in value) or "-"
        if isinstance(value, dict):
            return "{" + " ".join(f"{k}={show(v)}" for k, v in value.items()) + "}"
        return str(value)

    return " ".join(f"{key}={show(value)}" for key, value in body.items())


def main(argv: list[str] | None = None) -> NoReturn:
    """Run ``vramancer audit`` on its own (the integrated CLI mounts :data:`audit_app`)."""
    run_app(audit_app, "vramancer audit", argv)
