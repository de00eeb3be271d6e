"""One runbook per alert: it exists, names its alert, says what the alert means, how to
confirm it, what causes it and how to fix it; no runbook is left without an alert, and
the links of the runbooks lead somewhere."""

from __future__ import annotations

import re

from tests.monitoring.kit import RUNBOOKS_DIR, load_rules, runbook_path

SECTIONS = ("## What it means", "## Confirm", "## Likely causes", "## Fix")
LINK_RE = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")


def test_every_alert_has_a_runbook_that_names_it() -> None:
    for rule in load_rules():
        name = rule["alert"]
        text = runbook_path(rule).read_text()
        assert text.startswith(f"# {name}\n"), f"{runbook_path(rule)} must be titled {name}"
        for section in SECTIONS:
            assert section in text, f"{name}: no {section!r}"
        assert rule["labels"]["severity"] in text.split("\n\n")[1], f"{name}: severity"


def test_no_runbook_without_an_alert() -> None:
    alerts = {rule["alert"] for rule in load_rules()}
    pages = {path.stem for path in RUNBOOKS_DIR.glob("*.md")} - {"README"}
    assert pages == alerts
    index = (RUNBOOKS_DIR / "README.md").read_text()
    for alert in alerts:
        assert f"({alert}.md)" in index, f"docs/runbooks/README.md does not list {alert}"


def test_runbook_links_resolve() -> None:
    for page in RUNBOOKS_DIR.glob("*.md"):
        for target, _anchor in LINK_RE.findall(page.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
