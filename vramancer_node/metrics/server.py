"""Serving a node's metrics: ``GET /metrics`` on the API, and a plain HTTP listener.

Resource handling
-----------------
:func:`bind_metrics_socket` binds ``api.metrics_listen`` (``--metrics HOST:PORT``)
before the node starts (a taken port is a :class:`MetricsListenError`, not a
traceback); :func:`serve_metrics` then runs Hypercorn's trio worker on that socket
inside the daemon's nursery, with an application that
answers ``/metrics`` only; it reports the bound addresses through ``task_status``
(port 0 picks a free one) and drains when the node shuts down.  Prometheus
scrapes it without credentials, so bind it to an address only the monitoring network
reaches; the API socket's ``/metrics`` needs no listener at all.
"""

from __future__ import annotations

import socket
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
LISTEN_BACKLOG = 64


def metrics_route(metrics: NodeMetrics) -> Route:
    """``GET /metrics``: the text exposition format."""

    async def scrape(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return Route(METRICS_PATH, scrape)


def metrics_app(metrics: NodeMetrics) -> Starlette:
    async def not_found(request: Request) -> Response:
        return PlainTextResponse(f"only {METRICS_PATH} is served here\n", status_code=404)

    return Starlette(routes=[metrics_route(metrics), Route("/", not_found)])


class MetricsListenError(Exception):
    """The ``--metrics`` listener cannot be opened (address in use, not ours...)."""


def bind_metrics_socket(listen: str) -> socket.socket:
    """Bind and listen on ``listen`` (HOST:PORT) now, so a bad address is a clear error
    before any service starts."""
    host, port = parse_hostport(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host or "0.0.0.0", port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise MetricsListenError(
            f"cannot serve metrics on {listen}: {exc.strerror or exc}; choose another "
            "--metrics / api.metrics_listen"
        ) from exc
    return sock


async def serve_metrics(
    metrics: NodeMetrics,
    sock: socket.socket,
    *,
    shutdown_trigger: trio.Event,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``/metrics`` over plain HTTP on the bound ``sock`` until ``shutdown_trigger``."""
    config = HypercornConfig()
    config.bind = [f"fd://{sock.detach()}"]
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
