"""The client's only way into a node: HTTP over the node's Unix socket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from cli.common import fail
from vramancer_node.layout import API_SOCKET_NAME

REQUEST_TIMEOUT_S = 10.0


def api_get(state_dir: Path, path: str, *, ok_statuses: tuple[int, ...] = (200,)) -> Any:
    """GET ``path`` from the daemon of ``state_dir``; exit 1 with one line if unreachable."""
    socket_path = state_dir / API_SOCKET_NAME
    if not socket_path.exists():
        fail(f"no node is running with state dir {state_dir} ({socket_path} does not exist)")
    transport = httpx.HTTPTransport(uds=str(socket_path))
    try:
        with httpx.Client(
            transport=transport, base_url="http://vramancer-node", timeout=REQUEST_TIMEOUT_S
        ) as client:
            response = client.get(path)
    except httpx.ConnectError as exc:
        fail(f"no node is answering on {socket_path} ({exc}); is vramancer-node running?")
    except httpx.TimeoutException:
        fail(f"the node on {socket_path} did not answer within {REQUEST_TIMEOUT_S:g} s")
    except httpx.HTTPError as exc:
        fail(f"request to the node on {socket_path} failed: {exc}")
    if response.status_code not in ok_statuses:
        fail(f"the node answered {response.status_code} to GET {path}: {response.text[:200]}")
    try:
        return response.json()
    except ValueError:
        fail(f"the node answered GET {path} with a body that is not JSON")
