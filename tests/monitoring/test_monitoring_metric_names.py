"""Every metric the alert rules and the Grafana dashboard read is one a real daemon
exports, with the labels they match on.

The exported names come from the scrape of a real node: one daemon serving a tiny
checkpoint with placements committed through Raft, after one generation, so the
consensus, placement, pipeline and runtime families are all present.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.kit import wait_until
from tests.monitoring.kit import (
    dashboard_expressions,
    load_dashboard,
    load_rules,
    metric_names,
    selectors,
)
from tests.pipeline.kit import CONFIG_TOML, api, start_cluster, stop_cluster
from tests.runtime.kit import tiny_config, write_checkpoint

SERIES_SUFFIXES = {
    "histogram": ("_bucket", "_count", "_sum"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
}
"""Series a family of each type adds to its name (counters are named with _total)."""


@dataclass(frozen=True)
class Exported:
    """What a scrape holds: series names, and the label names seen on each."""

    names: frozenset[str]
    labels: dict[str, frozenset[str]]


def exported_from(text: str) -> Exported:
    names: set[str] = set()
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        base = family.name + ("_total" if family.type == "counter" else "")
        series = [base] + [family.name + s for s in SERIES_SUFFIXES.get(family.type, ())]
        names.update(series)
        for name in series:
            labels.setdefault(name, set())
        for sample in family.samples:
            names.add(sample.name)
            labels.setdefault(sample.name, set()).update(set(sample.labels) - {"le"})
            if sample.name.endswith("_bucket"):
                labels[sample.name].add("le")
    return Exported(frozenset(names), {k: frozenset(v) for k, v in labels.items()})


@pytest.fixture(scope="module")
def exported() -> Iterator[Exported]:
    root = Path(tempfile.mkdtemp(prefix="vrmmon-", dir="/tmp"))
    try:
        model = write_checkpoint(root / "models" / "llama", tiny_config("llama"), seed=4)
        config = CONFIG_TOML + 'placement_source = "consensus"\n'
        daemons = start_cluster(root, [[model]], config_toml=config)
        try:
            state, node_id = daemons[0].state, daemons[0].node_id

            def placeable() -> bool:
                """Admitted on the log, a leader, and its own devices gossiped (the leader
                plans from gossiped records)."""
                consensus = api(state, "GET", "/v1/status")[1]["consensus"]
                members = api(state, "GET", "/v1/cluster/peers")[1]["members"]
                local = [m for m in members if m["local"]]
                return (
                    consensus.get("leader") is not None
                    and node_id in consensus.get("members", [])
                    and bool(local and local[0]["memory_total_bytes"])
                )

            wait_until(placeable, 60, "the founder leading and its devices gossiped")
            body = {"model": "llama", "prompt_ids": [7, 1, 30], "max_tokens": 4}

            def generated() -> bool:
                status, events = api(state, "POST", "/v1/generate", body)
                assert status in (200, 503), events  # 503: no placement could be made yet
                return status == 200

            wait_until(generated, 60, "a generation answered 200")
            transport = httpx.HTTPTransport(uds=str(state / "api.sock"))
            with httpx.Client(transport=transport, base_url="http://node", timeout=60) as c:
                response = c.get("/metrics")
            assert response.status_code == 200
            yield exported_from(response.text)
        finally:
            stop_cluster(daemons)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _expressions() -> list[tuple[str, str]]:
    rules = [(f"alert {r['alert']}", r["expr"]) for r in load_rules()]
    panels = [("dashboard", expr) for expr in dashboard_expressions(load_dashboard())]
    return rules + panels


def test_the_scrape_holds_every_family_the_monitoring_reads(exported: Exported) -> None:
    """Sanity of the scrape itself: the families that appear only once a model is
    served and a placement committed are there."""
    for name in (
        "vramancer_consensus_voters",
        "vramancer_placement_epoch",
        "vramancer_runtime_token_duration_seconds_bucket",
        "vramancer_runtime_stage_duration_seconds_bucket",
        "vramancer_device_memory_free_bytes",
    ):
        assert name in exported.names, name


def test_every_metric_in_the_rules_and_the_dashboard_is_exported(exported: Exported) -> None:
    used = 0
    for where, expr in _expressions():
        names = metric_names(expr)
        assert names, f"{where}: {expr!r} reads no vramancer_ metric"
        unknown = names - exported.names
        assert not unknown, f"{where} reads {sorted(unknown)}, which the daemon does not export"
        used += len(names)
    assert used > 20


def test_every_label_matched_on_is_exported(exported: Exported) -> None:
    """A matcher on a label the series never carries silently matches nothing."""
    for where, expr in _expressions():
        for selector in selectors(expr):
            missing = set(selector.labels) - exported.labels[selector.metric] - {"job", "instance"}
            assert not missing, f"{where}: {selector.metric} has no label {sorted(missing)}"


def test_the_name_check_catches_an_unknown_metric(exported: Exported) -> None:
    expr = 'rate(vramancer_runtime_tokens_total[5m]) + vramancer_node_state{state="running"}'
    assert metric_names(expr) - exported.names == {"vramancer_runtime_tokens_total"}
    (selector,) = [s for s in selectors(expr) if s.metric == "vramancer_node_state"]
    assert selector.labels == ("state",)
    assert "state" in exported.labels["vramancer_node_state"]
