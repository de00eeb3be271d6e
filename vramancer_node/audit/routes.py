"""The audit log's HTTP endpoints, mounted into the node's API.

Endpoints
---------
``GET /v1/audit/tail?n=N``    the last N records (default :data:`TAIL_RECORDS_DEFAULT`,
                              at most ``TAIL_RECORDS_MAX``), ``vramancer.audit.tail.v1``
``GET /v1/audit/proof/{seq}`` inclusion proof of record ``seq`` against the latest
                              checkpoint, ``vramancer.audit.proof.v1``
``GET /v1/audit/verify``      verify the whole log, ``vramancer.audit.verify.v1``; 200
                              whatever the verdict (read ``ok``)
``GET /v1/audit/export``      the whole log as JSON lines (``application/x-ndjson``):
                              a ``vramancer.audit.export.v1`` header, one
                              ``vramancer.audit.record.v1`` per record, then the latest
                              ``vramancer.audit.checkpoint.v1``

Errors are ``vramancer.error.v1`` bodies: 400 bad parameter, 404 no such record, 503
the audit service is not running, 500 the store is damaged (run verify).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from vramancer_node.audit.documents import TAIL_RECORDS_MAX
from vramancer_node.audit.errors import AuditClosedError, StoreCorruptError

if TYPE_CHECKING:
    from vramancer_node.audit.service import AuditService

__all__ = ["EXPORT_PAGE_RECORDS", "TAIL_RECORDS_DEFAULT", "audit_routes"]

TAIL_RECORDS_DEFAULT = 20
EXPORT_PAGE_RECORDS = 256
"""Records read per read transaction while exporting (bounds memory and lock time)."""
JSON_LINES_MEDIA_TYPE = "application/x-ndjson"


def _error(status_code: int, message: str) -> JSONResponse:
    return JSONResponse({"schema": "vramancer.error.v1", "error": message}, status_code=status_code)


def audit_routes(get_service: Callable[[], AuditService | None]) -> list[Route]:
    """Return the audit routes; ``get_service`` gives the running service or ``None``."""

    async def tail(request: Request) -> Response:
        service = get_service()
        if service is None:
            return _error(503, "the audit log is not open")
        text = request.query_params.get("n", str(TAIL_RECORDS_DEFAULT))
        if not text.isdigit() or not 1 <= int(text) <= TAIL_RECORDS_MAX:
            return _error(400, f"n must be an integer from 1 to {TAIL_RECORDS_MAX}")
        return await _guard(lambda: service.tail(int(text)))

    async def proof(request: Request) -> Response:
        service = get_service()
        if service is None:
            return _error(503, "the audit log is not open")
        text = request.path_params["seq"]
        if not text.isdigit():
            return _error(400, "seq must be a non-negative integer")
        return await _guard(lambda: service.proof(int(text)))

    async def verify(request: Request) -> Response:
        service = get_service()
        if service is None:
            return _error(503, "the audit log is not open")

        async def run() -> dict[str, Any]:
            return (await service.verify()).to_json()

        return await _guard(run)

    async def export(request: Request) -> Response:
        service = get_service()
        if service is None:
            return _error(503, "the audit log is not open")
        try:
            header, latest = await service.export_head()
        except (AuditClosedError, StoreCorruptError) as exc:
            return _error(503 if isinstance(exc, AuditClosedError) else 500, str(exc))
        return StreamingResponse(
            _export_lines(service, header, latest), media_type=JSON_LINES_MEDIA_TYPE
        )

    return [
        Route("/v1/audit/tail", tail),
        Route("/v1/audit/proof/{seq}", proof),
        Route("/v1/audit/verify", verify),
        Route("/v1/audit/export", export),
    ]


async def _guard(produce: Callable[[], Any]) -> Response:
    try:
        body = await produce()
    except AuditClosedError as exc:
        return _error(503, str(exc))
    except StoreCorruptError as exc:
        return _error(500, str(exc))
    except LookupError as exc:
        return _error(404, str(exc.args[0]) if exc.args else "not found")
    return JSONResponse(body)


async def _export_lines(
    service: AuditService, header: dict[str, Any], latest: dict[str, Any] | None
) -> AsyncIterator[bytes]:
    yield _line(header)
    size = header["size"]
    for start in range(0, size, EXPORT_PAGE_RECORDS):
        page = await service.records(start, min(EXPORT_PAGE_RECORDS, size - start))
        yield b"".join(_line(record) for record in page)
    if latest is not None:
        yield _line(latest)


def _line(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=False).encode() + b"\n"
