"""The Prometheus alert rules: promtool accepts them, their unit tests pass (and can
fail), every alert carries what an on-call person needs, and every alert has tests that
fire it and tests that do not."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.monitoring.kit import (
    RULES_PATH,
    RULES_TEST_PATH,
    load_rules,
    promtool,
    runbook_path,
)

SEVERITIES = {"critical", "warning"}
ANNOTATIONS = {"summary", "description", "runbook_url"}
ALERTS = {
    "VramancerMembersDown",
    "VramancerTooFewVoters",
    "VramancerNoLeader",
    "VramancerLeaderFlapping",
    "VramancerAuditCheckpointStale",
    "VramancerAuditVerifyFailed",
    "VramancerDeviceMemoryLow",
    "VramancerSlowTokens",
}
"""The alerts issue #8 asks for: members down, too few voters, no leader, leader
flapping, stale checkpoint, audit verify failure, memory pressure, slow tokens."""


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_promtool_checks_the_rules() -> None:
    result = _promtool("check", "rules", RULES_PATH.name, cwd=RULES_PATH.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_rule_unit_tests_pass() -> None:
    result = _promtool("test", "rules", RULES_TEST_PATH.name, cwd=RULES_TEST_PATH.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_rule_unit_tests_can_fail(tmp_path: Path) -> None:
    """A rule whose threshold moved no longer passes its unit tests."""
    shutil.copy(RULES_TEST_PATH, tmp_path / RULES_TEST_PATH.name)
    text = RULES_PATH.read_text()
    moved = text.replace('{state="dead"}) > 0', '{state="dead"}) > 1')
    assert moved != text
    (tmp_path / RULES_PATH.name).write_text(moved)
    result = _promtool("test", "rules", RULES_TEST_PATH.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "VramancerMembersDown" in result.stdout + result.stderr


def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    text = RULES_PATH.read_text().replace("== 0\n", "== \n", 1)
    (tmp_path / "alerts.yml").write_text(text)
    result = _promtool("check", "rules", "alerts.yml", cwd=tmp_path)
    assert result.returncode != 0


def test_the_issue_s_alerts_are_all_there() -> None:
    assert {rule["alert"] for rule in load_rules()} == ALERTS


def test_every_alert_has_severity_summary_description_and_a_runbook() -> None:
    for rule in load_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert set(rule["annotations"]) == ANNOTATIONS, name
        assert rule["annotations"]["runbook_url"] == f"docs/runbooks/{name}.md", name
        assert runbook_path(rule).is_file(), f"{name}: {runbook_path(rule)} is missing"


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    document = yaml.safe_load(RULES_TEST_PATH.read_text())
    assert document["rule_files"] == [RULES_PATH.name]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in document["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    assert firing == ALERTS, f"no test fires {ALERTS - firing}"
    assert quiet == ALERTS, f"no test keeps quiet {ALERTS - quiet}"
