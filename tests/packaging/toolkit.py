"""Shared helpers of the packaging tests: find the system tools they need.

A missing tool skips a test only where it cannot be installed: not root and
``VRAMANCER_REQUIRE_NETNS`` unset (the variable ``.ci/run`` sets, as for the
network-namespace tests).  As root, or in CI, ``scripts/dev.sh setup`` installs the
tools, so a missing one is a failure, never a silent skip.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.netns_kit import REQUIRE_ENV


def must_run_here() -> bool:
    """True where a skip would hide a broken test (root, or CI)."""
    return os.geteuid() == 0 or os.environ.get(REQUIRE_ENV) == "1"


def require(reason_missing: str | None, fix: str) -> None:
    """Skip with ``reason_missing`` (fail where the test must run); no-op when None."""
    if reason_missing is None:
        return
    if must_run_here():
        pytest.fail(f"{reason_missing}; {fix}")
    pytest.skip(f"{reason_missing} (not root; {fix})")


def require_tool(name: str, package: str) -> str:
    """The path of the program ``name`` (from the Debian ``package``)."""
    path = shutil.which(name)
    require(
        None if path else f"{name} is not installed",
        f"run scripts/dev.sh setup as root, or apt-get install {package}",
    )
    assert path is not None
    return path


def require_root(what: str) -> None:
    require(None if os.geteuid() == 0 else f"{what} needs root", "run the suite as root")
