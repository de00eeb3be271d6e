"""The daemon: one trio nursery that owns every service of a node.

Theory of operation
-------------------
:func:`run_daemon` is what ``vramancer-node join`` runs.  It takes the state
directory's lock, opens one nursery, and starts each service with
``nursery.start`` so that a service is only counted as running once it has said
``task_status.started()``.  When every service is up the node is *ready*
(``/readyz`` answers 200).

Shutdown: SIGINT or SIGTERM sets ``shutdown_requested``; the API server stops
accepting, lets in-flight requests finish within ``api.shutdown_grace_s``, and the
nursery is cancelled.  A second signal during shutdown cancels at once.
``trio.Cancelled`` is never swallowed.

States: ``starting`` -> ``running`` -> ``stopping``.
"""

from __future__ import annotations

import signal
import socket
from pathlib import Path
from typing import Any

import trio

from crypto.identity import NodeIdentity
from vramancer_node import PROTOCOL_VERSION, __version__
from vramancer_node.api import create_app
from vramancer_node.apiserver import serve_api
from vramancer_node.config import NodeConfig
from vramancer_node.layout import API_SOCKET_NAME
from vramancer_node.logs import get_logger, new_trace_id, node_id_var, trace_id_var
from vramancer_node.statelock import StateLock

log = get_logger("daemon")

SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Node:
    """A running node: its identity, configuration and the services it owns."""

    def __init__(self, config: NodeConfig, identity: NodeIdentity, state_dir: Path) -> None:
        self.config = config
        self.identity = identity
        self.state_dir = Path(state_dir)
        self.name = config.node.name or socket.gethostname()
        self.state = "starting"
        self.shutdown_requested = trio.Event()
        self._started_at: float | None = None

    @property
    def api_socket_path(self) -> Path:
        return self.state_dir / API_SOCKET_NAME

    @property
    def ready(self) -> bool:
        return self.state == "running"

    def uptime_s(self) -> float:
        if self._started_at is None:
            return 0.0
        return trio.current_time() - self._started_at

    def status(self) -> dict[str, Any]:
        """The body of ``GET /v1/status`` (schema ``vramancer.status.v1``)."""
        return {
            "node_id": self.identity.node_id,
            "name": self.name,
            "public_key": self.identity.public_key_b64,
            "version": __version__,
            "protocol_version": PROTOCOL_VERSION,
            "state": self.state,
            "uptime_s": round(self.uptime_s(), 3),
            "cluster_id": None,
            "preset": self.config.preset,
            "listen": self.config.network.listen,
            "peers": list(self.config.network.peers),
            "mdns": self.config.discovery.mdns,
            "state_dir": str(self.state_dir),
        }

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every service until :attr:`shutdown_requested` is set."""
        self._started_at = trio.current_time()
        async with trio.open_nursery() as nursery:
            await nursery.start(self._serve_api)
            self.state = "running"
            log.info(
                "node running",
                extra={"node_name": self.name, "api_socket": str(self.api_socket_path)},
            )
            task_status.started()
            await self.shutdown_requested.wait()
            self.state = "stopping"
            log.info("node stopping")
            # The API server drains on its own (it watches the same event); the
            # other services have nothing to flush yet.

    async def _serve_api(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await serve_api(
            create_app(self),
            self.api_socket_path,
            shutdown_trigger=self.shutdown_requested,
            grace_s=self.config.api.shutdown_grace_s,
            task_status=task_status,
        )


async def _watch_signals(node: Node, signals: Any, cancel_scope: trio.CancelScope) -> None:
    async for signum in signals:
        if node.shutdown_requested.is_set():
            log.warning("second signal: stopping now")
            cancel_scope.cancel()
            return
        log.info("shutdown requested", extra={"signal": signal.Signals(signum).name})
        node.shutdown_requested.set()


async def run_daemon(config: NodeConfig, identity: NodeIdentity, state_dir: Path) -> None:
    """Run a node in the foreground until SIGINT or SIGTERM."""
    node_id_var.set(identity.node_id)
    if trace_id_var.get() == "-":  # the CLI normally set the run's trace id already
        trace_id_var.set(new_trace_id())
    lock = StateLock(state_dir)
    lock.acquire()
    try:
        node = Node(config, identity, state_dir)
        # Handlers go in before any service starts, so no signal is ever missed.
        with trio.open_signal_receiver(*SHUTDOWN_SIGNALS) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_watch_signals, node, signals, nursery.cancel_scope)
                await node.run()
                nursery.cancel_scope.cancel()  # the node is done: stop watching signals
        log.info("node stopped")
    finally:
        lock.release()
