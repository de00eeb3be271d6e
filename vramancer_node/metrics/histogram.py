"""A histogram a service can fill without knowing about Prometheus.

Theory of operation
-------------------
A service that times something (an audit commit, a token) holds a
:class:`Histogram` and calls :meth:`Histogram.observe`; the node's metrics
collectors read it at scrape time and render it as a Prometheus histogram
(:func:`vramancer_node.metrics.families.histogram_family`).  Keeping the buckets here,
not in a ``prometheus_client.Histogram``, leaves metric names and registries to
:mod:`vramancer_node.metrics` and keeps services free of a global registry.

Buckets are upper bounds in the unit of the values (seconds for durations); a
value above the last bound is counted only in ``+Inf`` (the total count).  Memory is
fixed: one counter per bucket.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

DURATION_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Default upper bounds for durations: 0.5 ms (a loopback round trip) to 10 s."""


class Histogram:
    """Counts of observed values per bucket, their sum and their number."""

    def __init__(self, bounds: Sequence[float] = DURATION_BUCKETS_S) -> None:
        if not bounds or list(bounds) != sorted(set(bounds)):
            raise ValueError("bucket bounds must be a non-empty, strictly increasing sequence")
        self.bounds = tuple(float(b) for b in bounds)
        self._counts = [0] * len(self.bounds)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one value (NaN is ignored: it has no bucket)."""
        if math.isnan(value):
            return
        index = bisect.bisect_left(self.bounds, value)
        if index < len(self._counts):
            self._counts[index] += 1
        self.count += 1
        self.sum += value

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, values <= bound)`` per bucket, then ``(inf, count)``."""
        out: list[tuple[float, int]] = []
        running = 0
        for bound, count in zip(self.bounds, self._counts, strict=True):
            running += count
            out.append((bound, running))
        out.append((math.inf, self.count))
        return out
