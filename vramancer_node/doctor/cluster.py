"""Checks that ask the running node: the members' clocks and versions."""

from __future__ import annotations

from typing import Any

from vramancer_node import PROTOCOL_VERSION, __version__
from vramancer_node.doctor.model import (
    START_HINT,
    CheckResult,
    DoctorInputs,
    NodeApiError,
    result,
)

CLOCK_SKEW_WARN_S = 0.5
"""Above this, audit timestamps of members visibly disagree: fix NTP soon."""
CLOCK_SKEW_FAIL_S = 5.0
"""Above this, freshly issued certificates and tokens can look not-yet-valid or expired."""


# -- clock and versions (ask the running node) -----------------------------------


def _clock_document(inputs: DoctorInputs) -> dict[str, Any] | CheckResult:
    try:
        document = inputs.node.get("/v1/cluster/clock")
    except NodeApiError as exc:
        return result(
            "clock", "warn", f"the node did not answer the clock probe: {exc}", START_HINT
        )
    if not isinstance(document, dict) or not isinstance(document.get("members"), list):
        return result("clock", "warn", "the node's clock answer is malformed", "upgrade the node")
    return document


def evaluate_clock(document: dict[str, Any]) -> CheckResult:
    """The clock verdict from a ``vramancer.clock.v1`` document."""
    members = document["members"]
    measured = [m for m in members if m.get("error") is None]
    failed = [m for m in members if m.get("error") is not None]
    if not members:
        return result("clock", "ok", "no other live member to compare clocks with")
    worst = max(measured, key=lambda m: abs(m["offset_s"]), default=None)
    unreached = "; ".join(f"{m.get('name') or m['node_id']}: {m['error']}" for m in failed)
    ntp = "enable NTP on every node: `timedatectl set-ntp true` (systemd-timesyncd or chrony)"
    text = ""
    if worst is not None:
        offset = worst["offset_s"]
        who = worst.get("name") or worst["node_id"]
        side = "ahead" if offset > 0 else "behind"
        text = f"{who} is {abs(offset):.3f} s {side} (±{worst['error_bound_s']:.3f} s)"
        if abs(offset) > CLOCK_SKEW_FAIL_S:
            return result("clock", "fail", f"clock skew above {CLOCK_SKEW_FAIL_S:g} s: {text}", ntp)
        if abs(offset) > CLOCK_SKEW_WARN_S:
            return result("clock", "warn", f"clock skew above {CLOCK_SKEW_WARN_S:g} s: {text}", ntp)
    if failed:
        return result(
            "clock",
            "warn",
            f"could not read {len(failed)} member clock(s): {unreached}",
            "check that those members run and are reachable (`vramancer peers`)",
        )
    return result(
        "clock", "ok", f"{len(measured)} member(s) within {CLOCK_SKEW_WARN_S:g} s (worst: {text})"
    )


def check_clock(inputs: DoctorInputs) -> CheckResult:
    if not inputs.node.running:
        return result(
            "clock", "warn", "no node is running: the members' clocks were not compared", START_HINT
        )
    document = _clock_document(inputs)
    return document if isinstance(document, CheckResult) else evaluate_clock(document)


def evaluate_versions(document: dict[str, Any], installed: str = __version__) -> CheckResult:
    """The version verdict from a ``vramancer.clock.v1`` document."""
    members = document["members"]
    refused = [m for m in members if "version_mismatch" in (m.get("error") or "")]
    other_protocol = [
        m for m in members if m.get("protocol_version") not in (None, PROTOCOL_VERSION)
    ]
    upgrade = "upgrade the older nodes one at a time (docs/operations.md, Upgrades)"
    if refused or other_protocol:
        names = ", ".join(m.get("name") or m["node_id"] for m in refused + other_protocol)
        return result(
            "versions",
            "fail",
            f"protocol version differs from ours ({PROTOCOL_VERSION}): {names}",
            upgrade,
        )
    running = document.get("software_version")
    if running != installed:
        return result(
            "versions",
            "warn",
            f"the running node is {running}, the installed program {installed}",
            "restart the node to run the installed version (`systemctl restart vramancer-node`)",
        )
    versions = sorted(
        {m["software_version"] for m in members if m.get("software_version")} | {running}
    )
    if len(versions) > 1:
        return result(
            "versions", "warn", f"mixed software versions: {', '.join(versions)}", upgrade
        )
    return result(
        "versions",
        "ok",
        f"protocol {PROTOCOL_VERSION}, software {running} on every reachable member",
    )


def check_versions(inputs: DoctorInputs) -> CheckResult:
    if not inputs.node.running:
        return result(
            "versions",
            "warn",
            f"no node is running (installed: {__version__}, protocol {PROTOCOL_VERSION})",
            START_HINT,
        )
    document = _clock_document(inputs)
    if isinstance(document, CheckResult):
        return CheckResult(
            name="versions", status=document.status, summary=document.summary, fix=document.fix
        )
    return evaluate_versions(document)
