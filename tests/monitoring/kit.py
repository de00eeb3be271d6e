"""What the monitoring tests read: the alert rules, their promtool unit tests, the
Grafana dashboard, the runbooks, and the metric names and label matchers that the
PromQL expressions of the rules and the dashboard use."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import BIN_DIR, REPO_ROOT
from tests.packaging.toolkit import require

MONITORING_DIR = REPO_ROOT / "packaging" / "monitoring"
RULES_PATH = MONITORING_DIR / "alerts.yml"
RULES_TEST_PATH = MONITORING_DIR / "alerts_test.yml"
DASHBOARD_PATH = MONITORING_DIR / "grafana-dashboard.json"
RUNBOOKS_DIR = REPO_ROOT / "docs" / "runbooks"

METRIC_RE = re.compile(r"\bvramancer_[a-z0-9_]+")
SELECTOR_RE = re.compile(r"\b(vramancer_[a-z0-9_]+)\s*\{([^}]*)\}")
MATCHER_RE = re.compile(r"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*\"[^\"]*\"\s*")
GRAFANA_VARIABLE_RE = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*(:[a-z]+)?\}?")


@dataclass(frozen=True)
class Selector:
    """One ``metric{label="value", ...}`` of an expression (labels as written)."""

    metric: str
    labels: tuple[str, ...]


def promtool() -> str:
    """The promtool that scripts/dev.sh unpacks into the venv (or one on PATH)."""
    path = BIN_DIR / "promtool"
    found = str(path) if path.exists() else shutil.which("promtool")
    require(
        None if found else "promtool is not installed",
        "run scripts/dev.sh setup (it unpacks Debian's prometheus package into .venv/bin)",
    )
    assert found is not None
    return found


def load_rules(path: Path = RULES_PATH) -> list[dict[str, Any]]:
    """Every alerting rule of the rule file, in order."""
    document = yaml.safe_load(path.read_text())
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def load_dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD_PATH.read_text())
    return loaded


def dashboard_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    out: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def dashboard_expressions(dashboard: dict[str, Any]) -> list[str]:
    """The PromQL of every panel target and of every query variable."""
    exprs = [
        target["expr"]
        for panel in dashboard_panels(dashboard)
        for target in panel.get("targets", [])
    ]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def metric_names(expr: str) -> set[str]:
    """The ``vramancer_*`` series names an expression reads."""
    return set(METRIC_RE.findall(expr))


def selectors(expr: str) -> list[Selector]:
    """The label matchers written on each metric of ``expr``."""
    out = []
    for metric, body in SELECTOR_RE.findall(expr):
        parts = [part for part in body.split(",") if part.strip()]
        labels = []
        for part in parts:
            match = MATCHER_RE.fullmatch(part)
            assert match is not None, f"cannot read the matcher {part!r} in {expr!r}"
            labels.append(match.group(1))
        out.append(Selector(metric, tuple(labels)))
    return out


def runbook_path(rule: dict[str, Any]) -> Path:
    """The runbook a rule links to (its ``runbook_url``, relative to the repository)."""
    return REPO_ROOT / rule["annotations"]["runbook_url"]
