"""The .deb end to end: build it, lintian finds no error, install it, run it from
/usr/bin (the version, and the daemon as the service user until ready), purge it, and
the machine is as it was before (files, unit, user).

Needs root (dpkg -i); runs in CI.  A file lock serialises runs, since dpkg allows one
at a time and two suites may share a machine.
"""

from __future__ import annotations

import fcntl
import grp
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
import torch as torch_module

from tests.conftest import REPO_ROOT, wait_for_socket
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
    Path("/var/lib/vramancer-node"),
    Path("/etc/systemd/system"),
    Path("/var/lib/systemd/deb-systemd-helper-enabled"),
    Path("/var/lib/systemd/deb-systemd-helper-masked"),
    Path("/usr/share/doc/vramancer-node"),
    Path("/usr/share/vramancer-node"),
)
"""Everything the package or its maintainer scripts may create."""
SUPPLEMENTARY_GROUPS = ("video", "render")
"""The unit's SupplementaryGroups=: they must exist or the service cannot start."""
TOOLS = (("dpkg-deb", "dpkg"), ("lintian", "lintian"), ("adduser", "adduser"))
TOOLS += (("setpriv", "util-linux"),)


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
        "device_groups": [_exists(g, grp.getgrnam) for g in SUPPLEMENTARY_GROUPS],
        "dpkg": _run("dpkg-query", "-W", "-f=${db:Status-Abbrev}", PACKAGE).stdout.strip(),
    }


@pytest.fixture
def dpkg_lock() -> Iterator[None]:
    with open(LOCK_PATH, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _world_readable(path: Path) -> bool:
    """Every directory up to ``path`` lets other users in (the service user reads it)."""
    return all(os.stat(p).st_mode & 0o005 == 0o005 for p in [path, *path.parents])


def _provide_torch_like_the_system(farm: Path) -> bool:
    """Make this suite's torch importable from the installed venv, as a system-wide torch
    is on a Jetson: a .pth names a directory of symlinks to exactly torch, numpy and what
    they need, so no other package of the test venv can hide a missing dependency.
    Returns whether the service user can read it (else the daemon runs as root)."""
    closure: set[str] = set()
    todo = ["torch", "numpy"]
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in closure:
            continue
        closure.add(name)
        for requirement in metadata.distribution(name).requires or []:
            if "extra ==" not in requirement:
                todo.append(re.split(r"[<>=!~;\[ (]", requirement, maxsplit=1)[0])
    (venv_site,) = Path("/opt/vramancer-node/lib").glob("python3*/site-packages")
    ours = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    assert venv_site.parent.name == ours, f"the .deb has {venv_site.parent.name}, the suite {ours}"
    site = Path(torch_module.__file__).resolve().parents[1]
    for name in closure:
        for file in metadata.distribution(name).files or []:
            top = file.parts[0]
            if top != ".." and not (farm / top).exists():
                (farm / top).symlink_to(site / top)
    (venv_site / "zz-test-system-torch.pth").write_text(f"{farm}\n")
    return _world_readable(site)


def _run_installed_daemon(env: dict[str, str]) -> None:
    """The installed venv runs the whole daemon as the service user until ready."""
    state = Path(tempfile.mkdtemp(prefix="vrmdeb-", dir="/tmp"))
    farm = Path(tempfile.mkdtemp(prefix="vrmtorch-", dir="/tmp"))
    try:
        farm.chmod(0o755)
        as_user = _provide_torch_like_the_system(farm)
        user = "vramancer" if as_user else "root"
        os.chown(state, pwd.getpwnam(user).pw_uid, grp.getgrnam(user).gr_gid)
        argv = [
            # as the unit runs it: the user, its group, SupplementaryGroups=video render
            "setpriv", f"--reuid={user}", f"--regid={user}",
            f"--groups={','.join(SUPPLEMENTARY_GROUPS)}", "--",
            "/usr/bin/vramancer-node", "join",
            "--state-dir", str(state / "s"), "--preset", "local", "--listen", "127.0.0.1:0",
            "--log-format", "json",
        ]  # fmt: skip
        log_path = state / "daemon.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                argv, env={**env, "HOME": str(state)}, stdout=subprocess.DEVNULL, stderr=log
            )
        try:
            wait_for_socket(state / "s" / "api.sock", proc, timeout_s=60)
            assert (state / "s" / "node.key").stat().st_uid == pwd.getpwnam(user).pw_uid
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{log_path.read_text()}") from None
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        assert proc.returncode == 0
    finally:
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(farm, ignore_errors=True)


def test_deb_builds_lints_installs_runs_and_purges(
    tmp_path: Path, dpkg_lock: None, clean_env: dict[str, str]
) -> None:
    require_root("installing a .deb")
    for tool, package in TOOLS:
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

    # lintian only reads the file: let it run while the package is installed and used.
    lint = subprocess.Popen(
        ["lintian", "--no-cfg", "--fail-on", "error", str(deb)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
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
        assert all(_exists(g, grp.getgrnam) for g in SUPPLEMENTARY_GROUPS)
        assert UNIT.exists() and WANTS_LINK.is_symlink()  # enabled ...
        assert not Path("/var/lib/vramancer/node.key").exists()  # ... but never started
        verified = _run(require_tool("systemd-analyze", "systemd"), "verify", "--man=no", str(UNIT))
        assert (verified.returncode, verified.stdout + verified.stderr) == (0, "")
        _run_installed_daemon(clean_env)
    finally:
        purged = _run("dpkg", "-P", PACKAGE, timeout=300)
        lint_output, _ = lint.communicate(timeout=300)
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert _snapshot() == before
    assert lint.returncode == 0, lint_output
    assert "\nE: " not in "\n" + lint_output
