"""Small builders for metric families, so collectors read as a list of what they export.

Every builder returns a ``prometheus_client`` metric family ready to ``yield`` from a
collector.  Names follow the Prometheus conventions: the ``vramancer_`` prefix is
added here (:data:`PREFIX`), values are in base units (seconds, bytes), counters are
named without ``_total`` (the client appends it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.metrics_core import Metric

from vramancer_node.metrics.histogram import Histogram

PREFIX = "vramancer_"


def _bound(value: float) -> str:
    return "+Inf" if math.isinf(value) else repr(float(value))


def gauge(name: str, doc: str, value: float) -> Metric:
    return GaugeMetricFamily(PREFIX + name, doc, value=value)


def counter(name: str, doc: str, value: float) -> Metric:
    return CounterMetricFamily(PREFIX + name, doc, value=value)


def labelled_gauge(name: str, doc: str, label: str, values: Mapping[str, float]) -> Metric:
    family = GaugeMetricFamily(PREFIX + name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def labelled_counter(name: str, doc: str, label: str, values: Mapping[str, float]) -> Metric:
    family = CounterMetricFamily(PREFIX + name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def gauge_rows(
    name: str, doc: str, labels: list[str], rows: Iterable[tuple[list[str], float]]
) -> Metric:
    """A gauge with several labels, one sample per ``(label values, value)`` row."""
    family = GaugeMetricFamily(PREFIX + name, doc, labels=labels)
    for label_values, value in rows:
        family.add_metric(label_values, value)
    return family


def info(name: str, doc: str, labels: Mapping[str, str]) -> Metric:
    """``<name>_info{...} 1`` (build information and the like)."""
    return InfoMetricFamily(PREFIX + name, doc, value=dict(labels))


def histogram_family(name: str, doc: str, histogram: Histogram) -> Metric:
    """A service's :class:`~vramancer_node.metrics.histogram.Histogram` as Prometheus sees it."""
    buckets = [(_bound(bound), count) for bound, count in histogram.cumulative()]
    return HistogramMetricFamily(PREFIX + name, doc, buckets=buckets, sum_value=histogram.sum)


def gauge_histogram(name: str, doc: str, bounds: Iterable[float], values: list[float]) -> Metric:
    """The distribution of values that exist *now* (not of events over time)."""
    ordered = sorted(values)
    buckets = [(_bound(b), sum(1 for v in ordered if v <= b)) for b in bounds]
    buckets.append(("+Inf", len(ordered)))
    return GaugeHistogramMetricFamily(
        PREFIX + name, doc, buckets=buckets, gsum_value=float(sum(ordered))
    )
