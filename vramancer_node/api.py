"""The node's HTTP API, an ASGI application (Starlette).

The local CLI reaches it over the Unix socket ``<state-dir>/api.sock``; the socket
file's mode (0600, in a 0700 directory) is the authorisation.  Every JSON body
carries ``"schema"``, a versioned name such as ``vramancer.status.v1``: a field may
be added within a version, never removed or changed in meaning.

Endpoints
---------
``GET /v1/status``  the node: id, public key, version, uptime, state, network.
``GET /healthz``    liveness: the event loop answers (200).
``GET /readyz``     readiness: 200 once every service has started, else 503.
``POST /v1/tokens`` a join token ``{"ttl_s": int, "uses": int}`` (admin nodes only).
``GET /v1/cluster/peers``  every member this node knows, with its state and devices.
``GET /metrics``    Prometheus text exposition (:mod:`vramancer_node.metrics`).
``GET /v1/cluster/clock``  each live member's clock offset and versions
(:mod:`vramancer_node.clockskew`; ``vramancer-node doctor`` reads it).
``/v1/consensus``, ``/v1/placement``, ``/v1/revocations``  consensus
(:mod:`vramancer_node.consensus.routes`).
``POST /v1/generate``, ``/v1/pipeline/*``  the pipeline (:mod:`vramancer_node.pipeline.routes`).
``/v1/models``, ``/v1/completions``, ``/v1/chat/completions``  OpenAI-compatible
(:mod:`vramancer_node.serving.openai`; no ``schema`` key: OpenAI's shapes).
``/v1/weights``, ``/v1/weights/fetch``  weight distribution (:mod:`vramancer_node.weights.routes`).
``POST /v1/drain``  drain this node or undrain it (:mod:`vramancer_node.drain`).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vramancer_node.audit.routes import audit_routes
from vramancer_node.clockskew import clock_routes
from vramancer_node.cluster import TOKEN_TTL_S_DEFAULT, TOKEN_USES_DEFAULT
from vramancer_node.consensus.routes import consensus_routes
from vramancer_node.drain import drain_routes
from vramancer_node.logs import new_trace_id, trace_id_var
from vramancer_node.metrics.server import metrics_route
from vramancer_node.pipeline.routes import pipeline_routes
from vramancer_node.serving.openai import openai_routes
from vramancer_node.serving.pipeline import PipelineGenerator
from vramancer_node.weights.routes import weights_routes

if TYPE_CHECKING:
    from vramancer_node.daemon import Node

TRACE_HEADER = "x-trace-id"
_TRACE_ID_RE = re.compile(r"^[0-9a-zA-Z-]{1,64}$")


def schema_body(schema: str, body: dict[str, Any]) -> dict[str, Any]:
    """Tag an API body with its versioned schema name."""
    return {"schema": schema, **body}


def _error(status_code: int, message: str) -> JSONResponse:
    return JSONResponse(
        schema_body("vramancer.error.v1", {"error": message}), status_code=status_code
    )


def create_app(node: Node) -> Starlette:
    """Build the API application serving ``node``."""

    async def status(request: Request) -> Response:
        return JSONResponse(schema_body("vramancer.status.v1", node.status()))

    async def healthz(request: Request) -> Response:
        return JSONResponse(schema_body("vramancer.health.v1", {"status": "ok"}))

    async def readyz(request: Request) -> Response:
        ready = node.ready
        body = schema_body("vramancer.ready.v1", {"ready": ready, "state": node.state})
        return JSONResponse(body, status_code=200 if ready else 503)

    async def create_token(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the request body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "the request body must be a JSON object")
        ttl_s, uses = body.get("ttl_s", TOKEN_TTL_S_DEFAULT), body.get("uses", TOKEN_USES_DEFAULT)
        for name, value in (("ttl_s", ttl_s), ("uses", uses)):
            if isinstance(value, bool) or not isinstance(value, int):
                return _error(400, f"{name} must be an integer")
        try:
            token, info = await node.create_token(ttl_s, uses)
        except PermissionError as exc:
            return _error(403, str(exc))
        except ValueError as exc:
            return _error(400, str(exc))
        return JSONResponse(schema_body("vramancer.token.v1", {"token": token, **info}))

    async def peers(request: Request) -> Response:
        return JSONResponse(schema_body("vramancer.peers.v1", {"members": node.peers_view()}))

    app = Starlette(
        routes=[
            Route("/v1/status", status),
            Route("/v1/cluster/peers", peers),
            *clock_routes(lambda: node),
            metrics_route(node.metrics),
            *audit_routes(lambda: node.audit),
            *consensus_routes(node),
            *pipeline_routes(node),
            *openai_routes(lambda: PipelineGenerator(node)),
            *weights_routes(node),
            *drain_routes(node),
            Route("/v1/tokens", create_token, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
        ]
    )
    app.add_middleware(_TraceMiddleware)
    return app


class _TraceMiddleware:
    """Give each request a trace id (the caller's ``X-Trace-Id`` when well-formed)."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = dict(scope.get("headers", [])).get(TRACE_HEADER.encode(), b"").decode("latin-1")
        trace_id = supplied if _TRACE_ID_RE.match(supplied) else new_trace_id()
        token = trace_id_var.set(trace_id)

        async def send_with_trace(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((TRACE_HEADER.encode(), trace_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_trace)
        finally:
            trace_id_var.reset(token)
