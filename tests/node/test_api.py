"""The daemon's API on its real Unix socket (trio, Hypercorn, Starlette)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import trio

from crypto.identity import generate_identity
from vramancer_node.apiserver import ApiSocketError, bind_unix_socket
from vramancer_node.config import build_config
from vramancer_node.daemon import Node


async def http_get(
    socket_path: Path, target: str, headers: str = ""
) -> tuple[int, dict[str, str], dict]:
    """A minimal HTTP/1.1 GET over a Unix socket, as a real client would send it."""
    stream = await trio.open_unix_socket(str(socket_path))
    async with stream:
        request = f"GET {target} HTTP/1.1\r\nHost: node\r\nConnection: close\r\n{headers}\r\n"
        await stream.send_all(request.encode())
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    header_map = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return status, header_map, json.loads(body)


async def test_status_health_ready_and_clean_shutdown(state_dir: Path) -> None:
    identity = generate_identity()
    node = Node(build_config({"preset": "local"}), identity, state_dir)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        sock = state_dir / "api.sock"
        assert stat.S_ISSOCK(sock.stat().st_mode)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600

        status, _, body = await http_get(sock, "/v1/status")
        assert status == 200
        assert body["schema"] == "vramancer.status.v1"
        assert body["node_id"] == identity.node_id
        assert body["public_key"] == identity.public_key_b64
        assert body["state"] == "running"
        assert body["uptime_s"] >= 0
        assert body["version"]

        status, _, body = await http_get(sock, "/healthz")
        assert (status, body["status"]) == (200, "ok")
        status, _, body = await http_get(sock, "/readyz")
        assert (status, body["ready"]) == (200, True)

        node.shutdown_requested.set()
    assert node.state == "stopping"
    assert not (state_dir / "api.sock").exists()


async def test_readyz_is_503_until_running(state_dir: Path) -> None:
    node = Node(build_config({"preset": "local"}), generate_identity(), state_dir)
    assert node.ready is False
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        node.state = "starting"  # as during a later service's start-up
        status, _, body = await http_get(state_dir / "api.sock", "/readyz")
        assert (status, body["ready"], body["state"]) == (503, False, "starting")
        node.state = "running"
        node.shutdown_requested.set()


async def test_trace_id_is_echoed_or_minted(state_dir: Path) -> None:
    node = Node(build_config({"preset": "local"}), generate_identity(), state_dir)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        sock = state_dir / "api.sock"
        _, headers, _ = await http_get(sock, "/healthz", "X-Trace-Id: abc-123\r\n")
        assert headers["x-trace-id"] == "abc-123"
        _, headers, _ = await http_get(sock, "/healthz", "X-Trace-Id: bad id!\r\n")
        assert len(headers["x-trace-id"]) == 16 and headers["x-trace-id"] != "bad id!"
        node.shutdown_requested.set()


def test_socket_path_too_long_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / ("x" * 120) / "api.sock"
    try:
        bind_unix_socket(path)
    except ApiSocketError as exc:
        assert "at most 107" in str(exc)
    else:
        raise AssertionError("a 120+ byte socket path must be refused")
