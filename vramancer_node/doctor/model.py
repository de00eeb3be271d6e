"""What every doctor check shares: the verdict, the inputs, the running node's API."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from vramancer_node.config import NodeConfig
from vramancer_node.devices.model import DeviceInfo
from vramancer_node.layout import API_SOCKET_NAME

Status = Literal["ok", "warn", "fail"]
API_TIMEOUT_S = 20.0
"""The clock probe waits up to clockskew.PROBE_TIMEOUT_S per member, concurrently."""
START_HINT = "start the node (`systemctl start vramancer-node` or `vramancer-node join`), rerun"


@dataclass(frozen=True, kw_only=True)
class CheckResult:
    """The verdict of one check."""

    name: str
    """Short check name (``gpu``, ``port`` ...)."""
    status: Status
    summary: str
    """What was found, one line."""
    fix: str | None = None
    """What to do about it (None when ok)."""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "summary": self.summary, "fix": self.fix}


class NodeApiError(Exception):
    """The running node answered, but not as expected."""


class NodeApi:
    """GET JSON from the node of ``state_dir`` over its Unix socket."""

    def __init__(self, state_dir: Path, timeout_s: float = API_TIMEOUT_S) -> None:
        self.socket_path = state_dir / API_SOCKET_NAME
        self.timeout_s = timeout_s
        self._running: bool | None = None
        self._answers: dict[str, Any] = {}

    def get(self, path: str) -> Any:
        """The JSON document at ``path`` (asked once per path; raises NodeApiError)."""
        if path not in self._answers:
            try:
                self._answers[path] = self._fetch(path)
            except NodeApiError as exc:
                self._answers[path] = exc
        answer = self._answers[path]
        if isinstance(answer, NodeApiError):
            raise answer
        return answer

    def _fetch(self, path: str) -> Any:
        transport = httpx.HTTPTransport(uds=str(self.socket_path))
        try:
            with httpx.Client(
                transport=transport, base_url="http://vramancer-node", timeout=self.timeout_s
            ) as client:
                response = client.get(path)
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise NodeApiError(f"GET {path}: {exc}") from exc
        if response.status_code != 200:
            raise NodeApiError(f"GET {path} answered {response.status_code}")
        return document

    @property
    def running(self) -> bool:
        """True when a node answers on the socket (asked once)."""
        if self._running is None:
            if not self.socket_path.exists():
                self._running = False
            else:
                try:
                    self.get("/healthz")
                    self._running = True
                except NodeApiError:
                    self._running = False
        return self._running


GpuProbe = tuple[str, Callable[[], list[DeviceInfo]]]


@dataclass(frozen=True, kw_only=True)
class DoctorInputs:
    config: NodeConfig
    state_dir: Path
    node: NodeApi
    gpu_probes: Sequence[GpuProbe] | None = None
    """Stand-ins for the NVML, Jetson and torch probes (tests); None: the real ones."""


def result(name: str, status: Status, summary: str, fix: str | None = None) -> CheckResult:
    return CheckResult(name=name, status=status, summary=summary, fix=fix)
