"""Prometheus metrics of weight distribution, read from the fetcher and server counters
at scrape time (registered by :mod:`vramancer_node.weightswiring`).

====================================================  =======  ========================
``vramancer_weights_fetched_bytes_total``             counter  file bytes received
``vramancer_weights_corrupt_transfers_total``         counter  transfers refused: bad
                                                               SHA-256 or size
``vramancer_weights_served_bytes_total``              counter  file bytes sent to members
``vramancer_weights_requests_total{outcome}``         counter  requests served: manifest,
                                                               read, refused_<code>
``vramancer_weights_fetch_jobs{state}``               gauge    background fetches by
                                                               state (running, done,
                                                               failed)
====================================================  =======  ========================

Label values come from fixed sets (request outcomes, error codes, job states), never
from model or node names.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.metrics_core import Metric

from vramancer_node.metrics import families as f
from vramancer_node.weights.fetch import Fetcher
from vramancer_node.weights.server import WeightsServer

JOB_STATES = ("running", "done", "failed")


def collect_weights(
    fetcher: Fetcher, server: WeightsServer, jobs: Mapping[str, Mapping[str, Any]]
) -> Iterator[Metric]:
    yield f.counter(
        "weights_fetched_bytes", "File bytes fetched from members.", fetcher.bytes_fetched
    )
    yield f.counter(
        "weights_corrupt_transfers",
        "Transfers refused because the bytes did not match the manifest.",
        fetcher.corrupt_transfers,
    )
    stats = server.stats
    yield f.counter("weights_served_bytes", "File bytes served to members.", stats["bytes_served"])
    outcomes = {key: value for key, value in stats.items() if key != "bytes_served"}
    yield f.labelled_counter(
        "weights_requests", "Weights requests served, by outcome.", "outcome", outcomes
    )
    states = collections.Counter({state: 0 for state in JOB_STATES})
    states.update(str(job["state"]) for job in jobs.values())
    yield f.labelled_gauge("weights_fetch_jobs", "Background fetches, by state.", "state", states)
