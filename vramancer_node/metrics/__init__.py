"""Prometheus metrics of one node: a registry of its own, filled at scrape time.

Theory of operation
-------------------
Each :class:`NodeMetrics` owns a ``prometheus_client.CollectorRegistry`` (never the
global one: several nodes may share a process in tests).  Nothing is counted twice:
services keep the counters they already keep for ``vramancer status`` (handshake
outcomes, dropped datagrams, audit commits ...), and *collectors* — plain functions
returning metric families — read them when Prometheus scrapes.  A service that times
something holds a :class:`~vramancer_node.metrics.histogram.Histogram`.

The node's own collectors live in :mod:`.node` (build, node state, membership,
gossip traffic, handshakes, audit, devices) and :mod:`.cluster` (consensus,
placement, pipeline).  The families builders (:mod:`.families`) add the
``vramancer_`` prefix and keep the conventions: base units, ``_total`` counters, no
label whose values grow without bound (no node ids or addresses as labels).

The hook for other parts of the node
------------------------------------
A part of the node that has numbers to export registers a collector once, typically
where it is wired into ``Node``::

    from vramancer_node.metrics import families as f

    def collect_runtime():
        yield f.counter("runtime_tokens", "Tokens generated.", driver.tokens_total)
        yield f.histogram_family(
            "runtime_time_to_first_token_seconds", "Time to the first token.", driver.ttft_s)

    node.metrics.register_collector(collect_runtime)

A collector runs in the event loop during a scrape: it must only read memory (no
I/O, no waiting).  One that raises is logged and counted in
``vramancer_metrics_collector_errors_total{collector}``; the scrape still answers.

Exposition: ``GET /metrics`` on the API socket (:func:`.server.metrics_route`) and,
with ``api.metrics_listen`` (``--metrics HOST:PORT``), a plain HTTP listener in the
daemon's nursery (:func:`.server.serve_metrics`).  See docs/metrics.md.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

from vramancer_node.logs import get_logger
from vramancer_node.metrics import families
from vramancer_node.metrics.histogram import Histogram

log = get_logger("metrics")

Collector = Callable[[], Iterable[Metric]]
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The classic text format, which every Prometheus release parses (the client's own
latest constant moved to 1.0.0, which older servers do not know)."""
COLLECTORS_MAX = 64
"""A bound on registered collectors (each part of the node registers one or two)."""

__all__ = ["CONTENT_TYPE", "Collector", "Histogram", "NodeMetrics", "families"]


class NodeMetrics:
    """The metrics of one node: a private registry and its collectors."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._collectors: list[tuple[str, Collector]] = []
        self.collector_errors: collections.Counter[str] = collections.Counter()
        self.registry.register(self)

    def register_collector(self, collect: Collector, *, name: str | None = None) -> None:
        """Add ``collect`` (called at every scrape, yields metric families)."""
        if len(self._collectors) >= COLLECTORS_MAX:
            raise ValueError(f"more than {COLLECTORS_MAX} metric collectors registered")
        label = name if name is not None else str(getattr(collect, "__qualname__", collect))
        self._collectors.append((label, collect))

    def collect(self) -> Iterator[Metric]:
        """All families, collector by collector (called by the registry)."""
        for name, collect in self._collectors:
            try:
                produced = list(collect())
            except Exception:
                self.collector_errors[name] += 1
                log.exception("metrics collector failed", extra={"collector": name})
                continue
            yield from produced
        yield families.labelled_counter(
            "metrics_collector_errors",
            "Scrapes in which a collector raised (its metrics were left out).",
            "collector",
            self.collector_errors,
        )

    def render(self) -> bytes:
        """The text exposition format (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)
