"""The Grafana dashboard: JSON Grafana loads (recent schema, unique ids, panels on the
24-column grid without overlap), the Prometheus data source as the variable
``${DS_PROMETHEUS}`` everywhere, the views issue #8 asks for, and PromQL that promtool
parses."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.monitoring.kit import (
    GRAFANA_VARIABLE_RE,
    dashboard_expressions,
    dashboard_panels,
    load_dashboard,
    promtool,
)

SCHEMA_VERSION_MIN = 36
"""Grafana 9.x and later; data sources as ``{type, uid}`` objects."""
GRID_COLUMNS = 24
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range"}
SAMPLE_VALUES = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
"""What Grafana substitutes for its built-in variables, for promtool's parser."""
REQUIRED_VIEWS = {
    "members by state": "vramancer_membership_members",
    "leader": 'role="leader"',
    "term": "vramancer_consensus_term",
    "placement epoch": "vramancer_placement_epoch",
    "memory free": "vramancer_device_memory_free_bytes",
    "memory total": "vramancer_device_memory_total_bytes",
    "per-stage": "vramancer_runtime_stage_duration_seconds_bucket",
    "tokens per second": "rate(vramancer_runtime_generated_tokens_total",
    "time to first token": "vramancer_runtime_time_to_first_token_seconds_bucket",
}
"""Title word -> what its query must read (cluster overview, per-node memory,
per-stage latency, tokens/s, time to first token)."""


def test_the_dashboard_is_recent_grafana_json() -> None:
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] >= SCHEMA_VERSION_MIN
    assert dashboard["uid"] and dashboard["title"]
    assert "id" not in dashboard or dashboard["id"] is None  # importable anywhere
    panels = dashboard_panels(dashboard)
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    taken: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= GRID_COLUMNS, panel
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"panel {panel['title']!r} overlaps another"
        taken |= cells


def test_the_datasource_is_the_ds_prometheus_variable() -> None:
    dashboard = load_dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    for panel in dashboard_panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]


def test_every_variable_used_is_defined() -> None:
    dashboard = load_dashboard()
    defined = {v["name"] for v in dashboard["templating"]["list"]} | BUILTIN_VARIABLES
    for expr in dashboard_expressions(dashboard):
        for match in GRAFANA_VARIABLE_RE.finditer(expr):
            name = match.group(0).strip("${}").split(":")[0]
            assert name in defined, f"{expr!r} uses the undefined variable ${name}"


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    panels = [p for p in dashboard_panels(load_dashboard()) if p["type"] != "row"]
    for word, reads in REQUIRED_VIEWS.items():
        matching = [
            p
            for p in panels
            if word in p["title"].lower() and any(reads in t["expr"] for t in p["targets"])
        ]
        assert matching, f"no panel titled with {word!r} reads {reads}"


def _as_promql(expr: str) -> str:
    """Grafana's variables replaced by values, as Grafana sends the query."""

    def value(match: re.Match[str]) -> str:
        name = match.group(0).strip("${}").split(":")[0]
        return SAMPLE_VALUES.get(name, ".*")

    return GRAFANA_VARIABLE_RE.sub(value, expr)


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    """Each query becomes a recording rule, so promtool's PromQL parser reads it."""
    exprs = dashboard_expressions(load_dashboard())
    rules = [
        {"record": f"dashboard:query_{index}", "expr": _as_promql(expr)}
        for index, expr in enumerate(exprs)
        if not expr.startswith("label_values(")  # Grafana's own function, not PromQL
    ]
    assert len(rules) > 20
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    path.write_text(path.read_text().replace("sum by", "sum byy", 1))
    result = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0  # the parser does read them
