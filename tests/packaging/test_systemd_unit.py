"""The systemd unit: it verifies, scores <= 2.5 in ``systemd-analyze security``, and holds
every setting the operations issue asks for; the Jetson drop-in verifies with it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, program
from tests.packaging.toolkit import require_tool

UNIT = REPO_ROOT / "packaging" / "systemd" / "vramancer-node.service"
JETSON = REPO_ROOT / "packaging" / "systemd" / "jetson.conf"
EXPOSURE_MAX = 2.5
_OVERALL_RE = re.compile(r"Overall exposure level for \S+: (\d+\.\d+)")


def _settings(text: str) -> dict[str, list[str]]:
    """Every ``Key=value`` of a unit file, repeated keys in order."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def _testable_copy(tmp_path: Path, *extra: Path) -> Path:
    """The unit (plus drop-ins appended) with ExecStart pointing at the installed program:
    ``verify`` checks that the executable exists, and /usr/bin has it only after the .deb."""
    text = UNIT.read_text().replace("/usr/bin/vramancer-node", program("vramancer-node"))
    for path in extra:
        text += "\n" + path.read_text()
    copy = tmp_path / "vramancer-node.service"
    copy.write_text(text)
    return copy


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    tool = require_tool("systemd-analyze", "systemd")
    return subprocess.run(
        [tool, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )


def _exposure(unit: Path) -> float:
    tool = require_tool("systemd-analyze", "systemd")
    result = subprocess.run(
        [tool, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = _OVERALL_RE.search(result.stdout + result.stderr)
    assert match is not None, f"no overall exposure in: {result.stdout}\n{result.stderr}"
    return float(match.group(1))


def test_unit_holds_what_the_issue_asks_for() -> None:
    s = _settings(UNIT.read_text())
    expected = {
        "Type": ["notify"],
        "Restart": ["on-failure"],
        "User": ["vramancer"],
        "StateDirectory": ["vramancer"],
        "ConfigurationDirectory": ["vramancer"],
        "RuntimeDirectory": ["vramancer"],
        "ProtectSystem": ["strict"],
        "ProtectHome": ["yes"],
        "PrivateTmp": ["yes"],
        "NoNewPrivileges": ["yes"],
        "CapabilityBoundingSet": [""],
        "RestrictAddressFamilies": ["AF_UNIX AF_INET AF_INET6 AF_NETLINK"],
        "DevicePolicy": ["closed"],
        "SupplementaryGroups": ["video render"],
    }
    for key, values in expected.items():
        assert s.get(key) == values, key
    assert "@system-service" in s["SystemCallFilter"]
    assert s["WatchdogSec"] and s["ExecStart"] == ["/usr/bin/vramancer-node join --log-format json"]
    allowed = " ".join(s["DeviceAllow"])
    for device in ("/dev/nvidiactl", "char-nvidia*", "char-drm"):
        assert device in allowed
    assert "MemoryDenyWriteExecute" not in s  # it breaks cffi (PyNaCl) and torch
    assert "DynamicUser" not in s  # a dedicated system user owns the state directory


def test_jetson_drop_in_allows_the_tegra_devices() -> None:
    allowed = " ".join(_settings(JETSON.read_text())["DeviceAllow"])
    for device in ("/dev/nvmap", "/dev/nvhost-ctrl", "char-nvhost*", "char-nvgpu*"):
        assert device in allowed


@pytest.mark.parametrize("drop_ins", [(), (JETSON,)], ids=["unit", "unit+jetson"])
def test_unit_verifies_and_scores_at_most_2_5(tmp_path: Path, drop_ins: tuple[Path, ...]) -> None:
    unit = _testable_copy(tmp_path, *drop_ins)
    result = _verify(unit)
    # verify exits 0 on unknown keys (it only warns), so any output is a failure too.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
    exposure = _exposure(unit)
    assert exposure <= EXPOSURE_MAX, f"systemd-analyze security scores {exposure}"


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The checks above can fail: a typo and a missing sandbox are caught."""
    broken = _testable_copy(tmp_path)
    broken.write_text(broken.read_text().replace("ProtectSystem=", "ProtectSytem="))
    assert "Unknown key 'ProtectSytem'" in _verify(broken).stderr
    bare = tmp_path / "bare.service"
    bare.write_text(f"[Service]\nType=notify\nExecStart={program('vramancer-node')} join\n")
    assert _exposure(bare) > EXPOSURE_MAX
