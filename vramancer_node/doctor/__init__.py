"""``vramancer-node doctor``: is this machine ready to run a node, and is its node well?

Theory of operation
-------------------
Each check is a function of :class:`DoctorInputs` returning one :class:`CheckResult`:
``ok``, ``warn`` (works, but look) or ``fail`` (will not work), a one-line summary
and, unless ok, a concrete fix.  Checks never raise for what they examine; they
report it.  :func:`run_checks` runs them in :data:`CHECKS` order; the CLI prints a
table or ``--json`` (schema ``vramancer.doctor.v1``) and exits 1 when any failed.

=========  ============================================================================
gpu        NVML, then Jetson, then torch: a GPU found but not queryable fails; no GPU
           at all warns (a CPU board still contributes memory).
port       ``network.listen`` free for TCP and UDP, unless our running node holds it.
mdns       a multicast socket joins 224.0.0.251 on ``discovery.mdns_interface`` and
           sends one query (skipped when mDNS is off).
state_dir  exists as a directory we can write (a missing one is created at start).
keys       ``node.key``, ``cluster/ca.key``, ``cluster/tokens``: regular files, mode
           0600, owned by the state directory's owner.
clock      the running node measures each live member's clock offset
           (``GET /v1/cluster/clock``, :mod:`vramancer_node.clockskew`).
versions   the members' protocol versions equal ours; mixed software versions, or a
           running node older than the installed program, warn.
=========  ============================================================================

The running node is reached only through its API socket (:class:`NodeApi`); when
no node runs, the checks that need it warn and say how to start it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from vramancer_node.doctor.cluster import (
    check_clock,
    check_versions,
    evaluate_clock,
    evaluate_versions,
)
from vramancer_node.doctor.files import check_keys, check_state_dir
from vramancer_node.doctor.host import check_gpu, check_mdns, check_port
from vramancer_node.doctor.model import CheckResult, DoctorInputs, NodeApi, NodeApiError

SCHEMA = "vramancer.doctor.v1"

__all__ = [
    "CHECKS",
    "SCHEMA",
    "CheckResult",
    "DoctorInputs",
    "NodeApi",
    "NodeApiError",
    "evaluate_clock",
    "evaluate_versions",
    "report",
    "run_checks",
]


CHECKS: tuple[Callable[[DoctorInputs], CheckResult], ...] = (
    check_gpu,
    check_port,
    check_mdns,
    check_state_dir,
    check_keys,
    check_clock,
    check_versions,
)


def run_checks(inputs: DoctorInputs) -> list[CheckResult]:
    """Every check, in order."""
    return [check(inputs) for check in CHECKS]


def report(results: Sequence[CheckResult]) -> dict[str, Any]:
    """The ``--json`` document."""
    return {
        "schema": SCHEMA,
        "ok": all(r.status != "fail" for r in results),
        "checks": [r.to_dict() for r in results],
    }
