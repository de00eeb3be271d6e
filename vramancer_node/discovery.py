"""mDNS / DNS-SD discovery with python-zeroconf, bridged into trio.

Theory of operation
-------------------
Each node advertises ``<node id>._vramancer._tcp.local.`` with a TXT record
``{cluster, node, proto, port, fp}`` (cluster id, node id, protocol version, the
peer port, and the CA fingerprint so a joiner can match its token) and browses for
the others.  zeroconf runs its own thread; its browser calls
:meth:`Discovery._on_service_state_change` there, which resolves the service and
hands a :class:`DiscoveredNode` to trio with ``trio.from_thread.run_sync``.  Inside
trio, found nodes go to a bounded memory channel that the daemon reads.

Two clusters on one LAN stay apart: every consumer filters by cluster id (members)
or by the CA fingerprint in its token (joiners); both are also enforced by the
handshake itself, so a lying advertisement only costs a refused connection.

Resource handling
-----------------
Zeroconf is created, registered, and closed in worker threads (its calls block); the
close runs shielded so a cancelled daemon still withdraws its advertisement.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

import ifaddr
import trio
from zeroconf import (
    InterfaceChoice,
    IPVersion,
    ServiceBrowser,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
)

from vramancer_node.logs import get_logger

log = get_logger("discovery")

SERVICE_TYPE = "_vramancer._tcp.local."
RESOLVE_TIMEOUT_MS = 3000
FOUND_QUEUE_MAX = 256
TXT_VALUE_CHARS_MAX = 64


@dataclass(frozen=True, kw_only=True)
class DiscoveredNode:
    """A node seen on the LAN (unauthenticated until a handshake proves it)."""

    node_id: str
    cluster_id: str
    ca_fingerprint: str
    protocol_version: int
    addresses: tuple[str, ...]
    """``host:port`` candidates, IPv4 first."""


def _txt(properties: dict[bytes, bytes | None], key: str) -> str:
    value = properties.get(key.encode())
    if value is None:
        raise ValueError(f"TXT record lacks {key!r}")
    text = value.decode("utf-8")
    if not 0 < len(text) <= TXT_VALUE_CHARS_MAX:
        raise ValueError(f"TXT {key!r} has an impossible length")
    return text


def parse_service_info(info: ServiceInfo) -> DiscoveredNode:
    """Turn a resolved service into a :class:`DiscoveredNode` (ValueError if malformed)."""
    properties = info.properties
    port = int(_txt(properties, "port"))
    if not 0 < port < 65536 or (info.port is not None and info.port != port):
        raise ValueError("TXT port does not match the service port")
    hosts = [str(ipaddress.ip_address(raw)) for raw in info.addresses]
    return DiscoveredNode(
        node_id=_txt(properties, "node"),
        cluster_id=_txt(properties, "cluster"),
        ca_fingerprint=_txt(properties, "fp"),
        protocol_version=int(_txt(properties, "proto")),
        addresses=tuple(f"{h}:{port}" if ":" not in h else f"[{h}]:{port}" for h in hosts),
    )


class Discovery:
    """Advertise this node and report the others, until cancelled."""

    def __init__(
        self,
        *,
        node_id: str,
        cluster_id: str | None,
        ca_fingerprint: str | None,
        protocol_version: int,
        port: int,
        interface: str | None,
    ) -> None:
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.ca_fingerprint = ca_fingerprint
        self.protocol_version = protocol_version
        self.port = port
        self.interface = interface
        self.malformed = 0
        self._send, self.found = trio.open_memory_channel[DiscoveredNode](FOUND_QUEUE_MAX)
        self._token: trio.lowlevel.TrioToken | None = None

    def _service_info(self, addresses: list[str]) -> ServiceInfo:
        return ServiceInfo(
            SERVICE_TYPE,
            f"{self.node_id}.{SERVICE_TYPE}",
            addresses=[socket.inet_aton(a) for a in addresses],
            port=self.port,
            properties={
                "cluster": self.cluster_id or "",
                "node": self.node_id,
                "proto": str(self.protocol_version),
                "port": str(self.port),
                "fp": self.ca_fingerprint or "",
            },
            server=f"{self.node_id}.local.",
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._token = trio.lowlevel.current_trio_token()
        interfaces: Any = [self.interface] if self.interface else InterfaceChoice.All
        zc = await trio.to_thread.run_sync(
            lambda: Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
        )
        info = None
        browser = None
        try:
            if self.cluster_id is not None:
                addresses = [self.interface] if self.interface else local_ipv4_addresses()
                info = self._service_info(addresses)
                await trio.to_thread.run_sync(zc.register_service, info)
            browser = ServiceBrowser(zc, SERVICE_TYPE, handlers=[self._on_service_state_change])
            log.info(
                "mDNS discovery running",
                extra={
                    "service": SERVICE_TYPE,
                    "advertised": info is not None,
                    "interface": self.interface or "all",
                },
            )
            task_status.started()
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._close, zc, browser, info)

    @staticmethod
    def _close(zc: Zeroconf, browser: ServiceBrowser | None, info: ServiceInfo | None) -> None:
        if browser is not None:
            browser.cancel()
        if info is not None:
            with contextlib.suppress(Exception):  # best effort: we are leaving anyway
                zc.unregister_service(info)
        zc.close()

    def _on_service_state_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        """zeroconf's thread: resolve, parse, hand to trio.  Never raises."""
        if state_change not in (ServiceStateChange.Added, ServiceStateChange.Updated):
            return
        if name.startswith(f"{self.node_id}."):
            return  # ourselves
        # The answer that announced the service usually carried its SRV, TXT and A
        # records too: take them from the cache, and only ask the network if not.
        info: ServiceInfo | None = ServiceInfo(service_type, name)
        assert info is not None
        if not info.load_from_cache(zeroconf):
            info = zeroconf.get_service_info(service_type, name, timeout=RESOLVE_TIMEOUT_MS)
        try:
            if info is None:
                raise ValueError("did not resolve")
            node = parse_service_info(info)
        except (ValueError, UnicodeDecodeError) as exc:
            self.malformed += 1
            log.debug("ignored mDNS service", extra={"service_name": name, "detail": str(exc)})
            return
        if self._token is not None:
            with contextlib.suppress(trio.RunFinishedError, trio.WouldBlock):
                trio.from_thread.run_sync(self._send.send_nowait, node, trio_token=self._token)


def local_ipv4_addresses() -> list[str]:
    """This host's non-loopback IPv4 addresses (read from the interfaces, nothing sent)."""
    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ip.ip.startswith("127."):
                found.append(ip.ip)
    return found or ["127.0.0.1"]


async def browse(*, node_id: str, interface: str | None, wait_s: float) -> list[DiscoveredNode]:
    """Listen for ``wait_s`` seconds without advertising; return every node seen."""
    discovery = Discovery(
        node_id=node_id,
        cluster_id=None,
        ca_fingerprint=None,
        protocol_version=0,
        port=0,
        interface=interface,
    )
    seen: dict[str, DiscoveredNode] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(discovery.run)
        with trio.move_on_after(wait_s):
            async for node in discovery.found:
                seen[node.node_id] = node
        nursery.cancel_scope.cancel()
    return list(seen.values())
