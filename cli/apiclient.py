"""The client's only way into a node: HTTP over the node's Unix socket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from cli.common import fail
from vramancer_node.layout import API_SOCKET_NAME

REQUEST_TIMEOUT_S = 10.0


def api_get(state_dir: Path, path: str) -> Any:
    """GET ``path`` from the daemon of ``state_dir``; exit 1 with one line if unreachable."""
    return api_request(state_dir, "GET", path)


def api_post(state_dir: Path, path: str, body: dict[str, Any]) -> Any:
    """POST JSON ``body`` to ``path``; the daemon's error message becomes ours."""
    return api_request(state_dir, "POST", path, body)


def api_request(state_dir: Path, method: str, path: str, body: Any = None) -> Any:
    socket_path = state_dir / API_SOCKET_NAME
    if not socket_path.exists():
        fail(f"no node is running with state dir {state_dir} ({socket_path} does not exist)")
    transport = httpx.HTTPTransport(uds=str(socket_path))
    try:
        with httpx.Client(
            transport=transport, base_url="http://vramancer-node", timeout=REQUEST_TIMEOUT_S
        ) as client:
            response = client.request(method, path, json=body)
    except httpx.ConnectError as exc:
        fail(f"no node is answering on {socket_path} ({exc}); is vramancer-node running?")
    except httpx.TimeoutException:
        fail(f"the node on {socket_path} did not answer within {REQUEST_TIMEOUT_S:g} s")
    except httpx.HTTPError as exc:
        fail(f"request to the node on {socket_path} failed: {exc}")
    try:
        document = response.json()
    except ValueError:
        fail(f"the node answered {method} {path} with {response.status_code} and no JSON body")
    if response.status_code != 200:
        detail = document.get("error") if isinstance(document, dict) else None
        fail(detail or f"the node answered {response.status_code} to {method} {path}")
    return document
