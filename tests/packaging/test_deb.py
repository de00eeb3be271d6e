"""The .deb end to end: build it, lintian finds no error, install it, run it from
/usr/bin, purge it, and the machine is as it was before (files, unit, user).

Needs root (dpkg -i); runs in CI.  A file lock serialises runs, since dpkg allows one
at a time and two suites may share a machine.
"""

from __future__ import annotations

import fcntl
import grp
import pwd
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.packaging.toolkit import require_root, require_tool
from vramancer_node import PROTOCOL_VERSION

PACKAGE = "vramancer-node"
BUILD = REPO_ROOT / "packaging" / "deb" / "build.sh"
LOCK_PATH = Path("/tmp/vramancer-deb-test.lock")
UNIT = Path("/lib/systemd/system/vramancer-node.service")
WANTS_LINK = Path("/etc/systemd/system/multi-user.target.wants/vramancer-node.service")
WATCHED_TREES = (
    Path("/opt/vramancer-node"),
    Path("/etc/vramancer"),
    Path("/var/lib/vramancer"),
    Path("/etc/systemd/system"),
    Path("/var/lib/systemd/deb-systemd-helper-enabled"),
    Path("/var/lib/systemd/deb-systemd-helper-masked"),
    Path("/usr/share/doc/vramancer-node"),
    Path("/usr/share/vramancer-node"),
)
"""Everything the package or its maintainer scripts may create."""


def _run(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)


def _installed() -> bool:
    status = _run("dpkg-query", "-W", "-f=${db:Status-Status}", PACKAGE)
    return status.returncode == 0 and status.stdout not in ("", "not-installed", "config-files")


def _exists(name: str, lookup: object) -> bool:
    try:
        lookup(name)  # type: ignore[operator]
    except KeyError:
        return False
    return True


def _snapshot() -> dict[str, object]:
    """What installing and purging must leave unchanged."""
    files: list[str] = []
    for tree in WATCHED_TREES:
        if tree.exists() or tree.is_symlink():
            files.append(str(tree))
            files.extend(str(p) for p in tree.rglob("*"))
    return {
        "files": sorted(files),
        "bin": sorted(str(p) for p in Path("/usr/bin").glob("vramancer*")),
        "unit": UNIT.exists(),
        "user": _exists("vramancer", pwd.getpwnam),
        "group": _exists("vramancer", grp.getgrnam),
        "dpkg": _run("dpkg-query", "-W", "-f=${db:Status-Abbrev}", PACKAGE).stdout.strip(),
    }


@pytest.fixture
def dpkg_lock() -> Iterator[None]:
    with open(LOCK_PATH, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def test_deb_builds_lints_installs_runs_and_purges(tmp_path: Path, dpkg_lock: None) -> None:
    require_root("installing a .deb")
    for tool, package in (("dpkg-deb", "dpkg"), ("lintian", "lintian"), ("adduser", "adduser")):
        require_tool(tool, package)
    if _installed() or Path("/opt/vramancer-node").exists():
        pytest.fail("vramancer-node is already installed here: `dpkg -P vramancer-node` first")
    before = _snapshot()

    built = _run(str(BUILD), "--out", str(tmp_path), "--fast", timeout=300)
    assert built.returncode == 0, built.stderr
    deb = Path(built.stdout.strip().splitlines()[-1])
    assert deb.parent == tmp_path and deb.name.startswith(f"{PACKAGE}_")
    arch = _run("dpkg", "--print-architecture").stdout.strip()
    assert deb.name.endswith(f"_{arch}.deb")

    lint = _run("lintian", "--no-cfg", "--fail-on", "error", str(deb), timeout=300)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "\nE: " not in "\n" + lint.stdout

    info = _run("dpkg-deb", "--field", str(deb), "Depends", "Suggests")
    assert "python3" in info.stdout and "python3-torch" in info.stdout  # torch: not bundled
    contents = _run("dpkg-deb", "--contents", str(deb)).stdout
    assert "/site-packages/torch/" not in contents

    try:
        installed = _run("dpkg", "-i", str(deb), timeout=300)
        assert installed.returncode == 0, installed.stdout + installed.stderr
        version = _run("/usr/bin/vramancer-node", "version", "--json")
        assert version.returncode == 0, version.stderr
        assert f'"protocol_version": {PROTOCOL_VERSION}' in version.stdout
        assert _run("/usr/bin/vramancer", "version").returncode == 0
        # The conffile is a valid configuration (root: the service's default path).
        shown = _run("/usr/bin/vramancer-node", "config", "show", "--json")
        assert shown.returncode == 0 and '"preset": "lan"' in shown.stdout, shown.stderr
        conffiles = _run("dpkg-query", "-W", "-f=${Conffiles}", PACKAGE).stdout
        assert "/etc/vramancer/node.toml" in conffiles
        assert pwd.getpwnam("vramancer").pw_dir == "/var/lib/vramancer"
        assert UNIT.exists() and WANTS_LINK.is_symlink()  # enabled ...
        assert not Path("/var/lib/vramancer/node.key").exists()  # ... but never started
        verified = _run(require_tool("systemd-analyze", "systemd"), "verify", "--man=no", str(UNIT))
        assert (verified.returncode, verified.stdout + verified.stderr) == (0, "")
    finally:
        purged = _run("dpkg", "-P", PACKAGE, timeout=300)
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert _snapshot() == before
