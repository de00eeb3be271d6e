"""``vramancer-node doctor``: every check's fail path on real files and sockets, the
verdicts on clock and version documents, and the command against two real daemons."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from tests.conftest import run_cli
from vramancer_node import PROTOCOL_VERSION, __version__
from vramancer_node.config import build_config
from vramancer_node.devices.errors import ProbeFailed, ProbeUnavailable
from vramancer_node.devices.model import DeviceInfo
from vramancer_node.doctor import (
    DoctorInputs,
    NodeApi,
    evaluate_clock,
    evaluate_versions,
    report,
    run_checks,
)
from vramancer_node.doctor.files import check_keys, check_state_dir
from vramancer_node.doctor.host import check_gpu, check_mdns, check_port

GIB = 2**30


def _inputs(state: Path, probes: list | None = None, **overrides: object) -> DoctorInputs:
    config = build_config({"preset": "local", **overrides})
    return DoctorInputs(config=config, state_dir=state, node=NodeApi(state), gpu_probes=probes)


def _unavailable() -> list[DeviceInfo]:
    raise ProbeUnavailable("no such library")


def _gpu(error: str | None = None) -> DeviceInfo:
    return DeviceInfo(
        kind="cuda", index=0, name="Test GPU", memory_total_bytes=8 * GIB,
        memory_free_bytes=6 * GIB, error=error,
    )  # fmt: skip


# -- gpu -------------------------------------------------------------------------


def test_gpu_ok_warn_and_fail(state_dir: Path) -> None:
    def failing() -> list[DeviceInfo]:
        raise ProbeFailed("NVML_ERROR_DRIVER_NOT_LOADED")

    ok = check_gpu(_inputs(state_dir, [("nvml", lambda: [_gpu()])]))
    none = check_gpu(_inputs(state_dir, [("nvml", _unavailable), ("torch", _unavailable)]))
    broken = check_gpu(_inputs(state_dir, [("nvml", failing), ("torch", _unavailable)]))
    lost = check_gpu(_inputs(state_dir, [("nvml", lambda: [_gpu("gpu_lost")])]))
    assert (ok.status, none.status, broken.status, lost.status) == ("ok", "warn", "fail", "fail")
    assert "6.0 GiB free" in ok.summary and ok.fix is None
    assert "NVML_ERROR_DRIVER_NOT_LOADED" in broken.summary and "DeviceAllow" in (broken.fix or "")
    assert "gpu_lost" in lost.summary


# -- port ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_DGRAM], ids=["tcp", "udp"])
def test_port_in_use_fails(state_dir: Path, kind: int) -> None:
    with socket.socket(socket.AF_INET, kind) as holder:
        holder.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            holder.listen()
        port = holder.getsockname()[1]
        result = check_port(_inputs(state_dir, **{"network.listen": f"127.0.0.1:{port}"}))
    assert result.status == "fail"
    assert "in use by another process" in result.summary
    assert f"sport = :{port}" in (result.fix or "")


def test_port_not_on_this_machine_fails_and_free_port_is_ok(state_dir: Path) -> None:
    foreign = check_port(_inputs(state_dir, **{"network.listen": "192.0.2.7:7733"}))
    assert foreign.status == "fail" and "cannot bind" in foreign.summary
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    free = check_port(_inputs(state_dir, **{"network.listen": f"127.0.0.1:{port}"}))
    assert free.status == "ok"


# -- mdns ------------------------------------------------------------------------


def test_mdns_on_a_foreign_interface_fails(state_dir: Path) -> None:
    overrides = {"discovery.mdns": True, "discovery.mdns_interface": "192.0.2.1"}
    result = check_mdns(_inputs(state_dir, **overrides))
    assert result.status == "fail"
    assert "join 224.0.0.251 on interface 192.0.2.1" in result.summary
    assert "mdns_interface" in (result.fix or "")
    assert check_mdns(_inputs(state_dir, **{"discovery.mdns": False})).status == "ok"


# -- state directory and keys -----------------------------------------------------


def test_state_dir_that_is_a_file_fails(state_dir: Path) -> None:
    not_a_dir = state_dir / "state"
    not_a_dir.write_text("oops")
    result = check_state_dir(_inputs(not_a_dir))
    assert (result.status, result.summary) == ("fail", f"{not_a_dir} is not a directory")


def test_state_dir_missing_warns_and_loose_mode_warns(state_dir: Path) -> None:
    assert check_state_dir(_inputs(state_dir / "new")).status == "warn"
    state_dir.chmod(0o755)
    loose = check_state_dir(_inputs(state_dir))
    assert loose.status == "warn" and "chmod 700" in (loose.fix or "")
    state_dir.chmod(0o700)
    assert check_state_dir(_inputs(state_dir)).status == "ok"


def _key(state: Path, relative: str = "node.key", mode: int = 0o600) -> Path:
    path = state / relative
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(b"k" * 32)
    path.chmod(mode)
    return path


def test_readable_key_fails_with_chmod_hint(state_dir: Path) -> None:
    _key(state_dir)
    assert check_keys(_inputs(state_dir)).status == "ok"
    ca = _key(state_dir, "cluster/ca.key", 0o640)
    result = check_keys(_inputs(state_dir))
    assert result.status == "fail" and "mode 0640" in result.summary
    assert f"chmod 600 {ca}" in (result.fix or "")


def test_key_that_is_a_symlink_fails(state_dir: Path) -> None:
    target = _key(state_dir, "elsewhere")
    (state_dir / "node.key").symlink_to(target)
    result = check_keys(_inputs(state_dir))
    assert result.status == "fail" and "not a regular file" in result.summary


def test_key_owned_by_someone_else_fails(state_dir: Path) -> None:
    key = _key(state_dir)
    if os.geteuid() != 0:
        pytest.skip("changing a file's owner needs root")
    os.chown(key, 65534, -1)
    result = check_keys(_inputs(state_dir))
    assert result.status == "fail" and "belongs to uid 65534" in result.summary


def test_no_key_yet_warns(state_dir: Path) -> None:
    assert check_keys(_inputs(state_dir)).status == "warn"


# -- clock and versions -----------------------------------------------------------


def _member(name: str, **fields: object) -> dict[str, object]:
    row: dict[str, object] = {
        "node_id": name.upper(), "name": name, "address": "10.0.0.1:7733", "offset_s": 0.01,
        "rtt_s": 0.002, "error_bound_s": 0.001, "protocol_version": PROTOCOL_VERSION,
        "software_version": __version__, "error": None,
    }  # fmt: skip
    row.update(fields)
    return row


def _clock(*members: dict[str, object]) -> dict[str, object]:
    return {"software_version": __version__, "members": list(members)}


def test_clock_verdicts() -> None:
    assert evaluate_clock(_clock()).status == "ok"
    assert evaluate_clock(_clock(_member("a"), _member("b", offset_s=-0.3))).status == "ok"
    warn = evaluate_clock(_clock(_member("a", offset_s=-1.5)))
    fail = evaluate_clock(_clock(_member("a"), _member("b", offset_s=42.0)))
    assert warn.status == "warn" and "a is 1.500 s behind" in warn.summary
    assert fail.status == "fail" and "b is 42.000 s ahead" in fail.summary
    assert "timedatectl set-ntp true" in (fail.fix or "")
    unreachable = evaluate_clock(_clock(_member("a", error="no answer within 5 s")))
    assert unreachable.status == "warn" and "no answer" in unreachable.summary


def test_version_verdicts() -> None:
    assert evaluate_versions(_clock(_member("a"))).status == "ok"
    other = evaluate_versions(_clock(_member("a", protocol_version=PROTOCOL_VERSION + 1)))
    refused = evaluate_versions(
        _clock(_member("a", error="handshake refused (version_mismatch): ..."))
    )
    mixed = evaluate_versions(_clock(_member("a", software_version="0.0.1")))
    stale = evaluate_versions(_clock(_member("a")), installed="9.9.9")
    assert (other.status, refused.status, mixed.status) == ("fail", "fail", "warn")
    assert "mixed software versions" in mixed.summary
    assert stale.status == "warn" and "systemctl restart" in (stale.fix or "")


def test_without_a_running_node_the_cluster_checks_warn(state_dir: Path) -> None:
    results = {r.name: r for r in run_checks(_inputs(state_dir, [("nvml", lambda: [_gpu()])]))}
    assert [results["clock"].status, results["versions"].status] == ["warn", "warn"]
    assert report(list(results.values()))["ok"] is True


# -- the command, against two real daemons --------------------------------------


def test_doctor_against_a_running_pair(cluster_pair: tuple[Path, Path]) -> None:
    founder, _joiner = cluster_pair
    result = run_cli("vramancer-node", "doctor", "--state-dir", str(founder), "--json")
    document = json.loads(result.stdout)
    checks = {c["name"]: c for c in document["checks"]}
    assert document["schema"] == "vramancer.doctor.v1"
    assert result.returncode == (0 if document["ok"] else 1)
    assert checks["port"]["status"] == "ok" and "held by this node" in checks["port"]["summary"]
    assert checks["keys"]["status"] == "ok"
    assert checks["clock"]["status"] == "ok", checks["clock"]
    assert "1 member(s) within" in checks["clock"]["summary"]
    assert checks["versions"]["status"] == "ok", checks["versions"]


def test_doctor_exits_1_on_a_fail(state_dir: Path) -> None:
    (state_dir / "state").write_text("not a directory")
    result = run_cli("vramancer-node", "doctor", "--state-dir", str(state_dir / "state"))
    assert result.returncode == 1
    assert "state_dir  fail" in result.stdout
    assert "state_dir: fix: remove it or pick another --state-dir" in result.stdout
