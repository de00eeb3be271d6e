"""Serving a node's metrics: ``GET /metrics`` on the API, and a plain HTTP listener.

Resource handling
-----------------
:func:`serve_metrics` runs Hypercorn's trio worker on ``api.metrics_listen``
(``--metrics HOST:PORT``) inside the daemon's nursery, with an application that
answers ``/metrics`` only; it reports the bound addresses through ``task_status``
(port 0 picks a free one) and drains when the node shuts down.  Prometheus
scrapes it without credentials, so bind it to an address only the monitoring network
reaches; the API socket's ``/metrics`` needs no listener at all.
"""

from __future__ import annotations

from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from vramancer_node.config import parse_hostport
from vramancer_node.metrics import CONTENT_TYPE, NodeMetrics

METRICS_PATH = "/metrics"
SHUTDOWN_GRACE_S = 1.0
"""A scrape in flight at shutdown gets this long."""


def metrics_route(metrics: NodeMetrics) -> Route:
    """``GET /metrics``: the text exposition format."""

    async def scrape(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return Route(METRICS_PATH, scrape)


def metrics_app(metrics: NodeMetrics) -> Starlette:
    async def not_found(request: Request) -> Response:
        return PlainTextResponse(f"only {METRICS_PATH} is served here\n", status_code=404)

    return Starlette(routes=[metrics_route(metrics), Route("/", not_found)])


def _bind(listen: str) -> str:
    host, port = parse_hostport(listen)
    return f"[{host}]:{port}" if ":" in host else f"{host or '0.0.0.0'}:{port}"


async def serve_metrics(
    metrics: NodeMetrics,
    listen: str,
    *,
    shutdown_trigger: trio.Event,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``/metrics`` over plain HTTP on ``listen`` until ``shutdown_trigger``."""
    config = HypercornConfig()
    config.bind = [_bind(listen)]
    config.graceful_timeout = SHUTDOWN_GRACE_S
    config.accesslog = None
    config.errorlog = None
    app: Any = metrics_app(metrics)  # an ASGI app; hypercorn's type names its own protocol
    await serve(
        app,
        config,
        shutdown_trigger=shutdown_trigger.wait,
        task_status=task_status,
    )
