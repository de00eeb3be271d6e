"""The daemon: one trio nursery that owns every service of a node.

Theory of operation
-------------------
:func:`run_daemon` is what ``vramancer-node join`` runs.  It takes the state
directory's lock, opens one nursery, and starts each service with
``nursery.start`` so that a service is only counted as running once it has said
``task_status.started()``.  When every service is up the node is *ready*
(``/readyz`` answers 200).

Shutdown: SIGINT or SIGTERM sets ``shutdown_requested``; the API server stops
accepting, lets in-flight requests finish within ``api.shutdown_grace_s``, and the
nursery is cancelled.  A second signal during shutdown cancels at once.
``trio.Cancelled`` is never swallowed.

States: ``starting`` -> ``running`` -> ``stopping``.
"""

from __future__ import annotations

import collections
import functools
import signal
import socket
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import trio

from crypto.certs import ca_fingerprint
from crypto.gossip import Keyring
from crypto.identity import NodeIdentity
from crypto.noise import KeyPair
from protocol.membership import MemberRecord, MembershipTiming
from vramancer_node import PROTOCOL_VERSION, __version__
from vramancer_node.api import create_app
from vramancer_node.apiserver import serve_api
from vramancer_node.audit import AuditService, kinds
from vramancer_node.auditwiring import AuditWiring
from vramancer_node.clockskew import SERVICE_CLOCK, make_clock_handler
from vramancer_node.cluster import (
    Admin,
    ClusterStore,
    Membership,
)
from vramancer_node.config import NodeConfig, parse_hostport
from vramancer_node.consensus import ConsensusService
from vramancer_node.consensuswiring import ConsensusWiring
from vramancer_node.devices import DeviceMonitor, gossip_records
from vramancer_node.discovery import Discovery, local_ipv4_addresses
from vramancer_node.drain import is_draining, read_drain, with_draining
from vramancer_node.enrolment import Enrolment, token_audit_body
from vramancer_node.knownpeers import (
    SAVE_INTERVAL_S as KNOWN_PEERS_SAVE_INTERVAL_S,
)
from vramancer_node.knownpeers import (
    KnownPeersKeeper,
    load_known_peers,
)
from vramancer_node.layout import API_SOCKET_NAME
from vramancer_node.logs import get_logger, new_trace_id, node_id_var, trace_id_var
from vramancer_node.membership import MembershipService
from vramancer_node.metrics import NodeMetrics
from vramancer_node.metrics.cluster import register_cluster_collectors
from vramancer_node.metrics.node import register_node_collectors
from vramancer_node.metrics.server import bind_metrics_socket, serve_metrics
from vramancer_node.net.handshake import (
    Credentials,
    HandshakeFailed,
)
from vramancer_node.peering import PeerService, wall_clock
from vramancer_node.pipelinewiring import PipelineWiring
from vramancer_node.sdnotify import NO_NOTIFY, Notifier
from vramancer_node.statelock import StateLock
from vramancer_node.weightswiring import WeightsWiring

log = get_logger("daemon")

SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)
DEVICE_REFRESH_INTERVAL_S = 10.0
"""How often memory and devices are re-probed (changes are gossiped)."""
LEAVE_GRACE_S = 1.0
"""Time the goodbye gossip gets at shutdown."""


def _print_line(text: str) -> None:
    print(text, flush=True)


class Node(Enrolment, AuditWiring, ConsensusWiring, PipelineWiring, WeightsWiring):
    """A running node: its identity, configuration and the services it owns."""

    def __init__(
        self,
        config: NodeConfig,
        identity: NodeIdentity,
        state_dir: Path,
        *,
        token: str | None = None,
        announce: Callable[[str], None] = _print_line,
        notifier: Notifier = NO_NOTIFY,
    ) -> None:
        self.config = config
        self.notifier = notifier
        self.identity = identity
        self.state_dir = Path(state_dir)
        self.name = config.node.name or socket.gethostname()
        self.state = "starting"
        self.shutdown_requested = trio.Event()
        self._started_at: float | None = None
        self._token = token
        self._announce = announce
        self.store = ClusterStore(self.state_dir)
        self.membership: Membership | None = None
        self.gossip: MembershipService | None = None
        self.consensus: ConsensusService | None = None
        self.audit: AuditService | None = None
        self.devices: DeviceMonitor | None = None
        self._pending_audit: list[tuple[str, dict[str, Any]]] = []
        self.cosign_exchanges: collections.Counter[str] = collections.Counter()
        """Checkpoint exchanges with members by result (ok, failed), for metrics."""
        self._joined_via: str | None = None
        self._known_peers = KnownPeersKeeper(self.state_dir)
        self.admin: Admin | None = None
        self.creds = Credentials(
            identity=identity,
            noise_static=KeyPair.generate(),  # per process, never stored
            certificate=None,
            software_version=__version__,
            protocol_version=PROTOCOL_VERSION,
        )
        self.peers = PeerService(
            self.creds,
            self._trust_policy,
            lambda: self._admit if self.admin is not None else None,
            listen=config.network.listen,
            timeout_s=config.network.connect_timeout_s,
        )
        self.peers.register(SERVICE_CLOCK, make_clock_handler())
        self.metrics = NodeMetrics()
        self.metrics_listening: list[str] = []
        self._metrics_socket: socket.socket | None = None
        register_node_collectors(self.metrics, self)
        register_cluster_collectors(self.metrics, self)
        self._init_pipeline()
        self._init_weights()

    @property
    def api_socket_path(self) -> Path:
        return self.state_dir / API_SOCKET_NAME

    @property
    def ready(self) -> bool:
        return self.state == "running"

    def uptime_s(self) -> float:
        if self._started_at is None:
            return 0.0
        return trio.current_time() - self._started_at

    def status(self) -> dict[str, Any]:
        """The body of ``GET /v1/status`` (schema ``vramancer.status.v1``)."""
        cert = self.membership.cert if self.membership is not None else None
        return {
            "node_id": self.identity.node_id,
            "name": self.name,
            "public_key": self.identity.public_key_b64,
            "version": __version__,
            "protocol_version": PROTOCOL_VERSION,
            "state": self.state,
            "uptime_s": round(self.uptime_s(), 3),
            "cluster_id": self.membership.cluster_id if self.membership else None,
            "serial": cert.serial if cert else None,
            "roles": list(cert.roles) if cert else [],
            "admin": self.admin is not None,
            "preset": self.config.preset,
            "listen": self.config.network.listen,
            "listening": list(self.peers.bound),
            "handshakes": dict(sorted(self.peers.handshakes.items())),
            "gossip": self._gossip_stats(),
            "consensus": self.consensus_status(),
            "peers": list(self.config.network.peers),
            "mdns": self.config.discovery.mdns,
            "state_dir": str(self.state_dir),
            "metrics_listening": list(self.metrics_listening),
            "draining": is_draining(self.gossip, self.state_dir),
        }

    def bind_metrics(self) -> None:
        """Bind ``api.metrics_listen`` now (raises MetricsListenError); idempotent."""
        listen = self.config.api.metrics_listen
        if listen is not None and self._metrics_socket is None:
            self._metrics_socket = bind_metrics_socket(listen)

    def status_line(self) -> str:
        """One line for ``systemctl status`` (sd_notify ``STATUS=``)."""
        alive = self.gossip.core.metrics()["members_alive"] if self.gossip is not None else 0
        return f"{self.state}: node {self.name} ({self.identity.node_id}), {alive} alive"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every service until :attr:`shutdown_requested` is set."""
        self._started_at = trio.current_time()
        if self.membership is None:
            await self.become_member()
        async with trio.open_nursery() as nursery:
            # The API drains on its own when shutdown is requested (it watches the
            # same event); the other services are cancelled then.
            await nursery.start(self._serve_api)
            if self.config.api.metrics_listen is not None:
                self.bind_metrics()
                assert self._metrics_socket is not None
                self.metrics_listening = await nursery.start(
                    functools.partial(serve_metrics, shutdown_trigger=self.shutdown_requested),
                    self.metrics,
                    self._metrics_socket,
                )
            async with trio.open_nursery() as services:
                await self._start_audit(services)
                await services.start(self.peers.serve)
                self.devices = DeviceMonitor(
                    self._devices_changed, refresh_interval_s=DEVICE_REFRESH_INTERVAL_S
                )
                first_devices = await services.start(self.devices.run)
                self.gossip = self._membership_service(gossip_records(first_devices))
                await services.start(self.gossip.run)
                await self._start_consensus(services)
                self._start_pipeline()
                self._start_weights(services)
                if self.config.discovery.mdns:
                    await services.start(self._run_discovery)
                services.start_soon(self._cosign_loop)
                services.start_soon(self._keep_known_peers)
                self.state = "running"
                log.info(
                    "node running",
                    extra={"node_name": self.name, "api_socket": str(self.api_socket_path)},
                )
                self.notifier.ready(self.status_line())
                services.start_soon(self.notifier.watchdog, lambda: self.ready, self.status_line)
                task_status.started()
                for address in self.config.network.peers:
                    services.start_soon(self._greet, address)
                await self.shutdown_requested.wait()
                self.state = "stopping"
                log.info("node stopping")
                self.notifier.stopping("stopping: leaving the cluster")
                with trio.move_on_after(LEAVE_GRACE_S):
                    await self._known_peers.save(self._alive_addresses())
                    await self.gossip.leave()
                services.cancel_scope.cancel()

    async def _greet(self, address: str) -> None:
        """Authenticate to a configured peer once (membership takes over later)."""
        try:
            await self.peers.connect(address)
        except trio.TooSlowError:
            log.warning("peer did not answer in time", extra={"peer_address": address})
        except (HandshakeFailed, OSError, trio.BrokenResourceError) as exc:
            log.warning(
                "could not authenticate peer", extra={"peer_address": address, "detail": str(exc)}
            )

    def advertised_address(self) -> str:
        """Where other members reach us: ``network.advertise``, else listen host + bound port."""
        if self.config.network.advertise:
            return self.config.network.advertise
        host, _ = parse_hostport(self.config.network.listen)
        _, port = parse_hostport(self.peers.bound[0])
        if host in ("", "0.0.0.0", "::"):
            host = local_ipv4_addresses()[0]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _devices_changed(self, devices: list[Any]) -> None:
        if self.gossip is not None:
            self.gossip.update_local(devices=gossip_records(devices))
            log.info("devices changed", extra={"devices": [d.to_dict() for d in devices]})

    def _membership_service(self, devices: tuple[Any, ...]) -> MembershipService:
        assert self.membership is not None
        cert = self.membership.cert
        local = MemberRecord(
            node_id=self.identity.node_id,
            name=self.name,
            addresses=(self.advertised_address(),),
            roles=cert.roles,
            software_version=__version__,
            protocol_version=PROTOCOL_VERSION,
            devices=devices,
            drain=read_drain(self.state_dir),  # a drained node restarts drained
        )
        timing = MembershipTiming(
            **{f.name: getattr(self.config.membership, f.name) for f in fields(MembershipTiming)}
        )
        host, _ = parse_hostport(self.config.network.listen)
        _, port = parse_hostport(self.peers.bound[0])
        return MembershipService(
            local=local,
            timing=timing,
            keyring=Keyring(self.membership.gossip_keys, self.membership.cluster_id),
            peers=self.peers,
            bind=f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
            seeds=list(dict.fromkeys([*self.config.network.peers, *self._seed_extra()])),
        )

    def _seed_extra(self) -> list[str]:
        """The address we joined through, then the members alive when we last ran."""
        own = self.advertised_address()
        known = [a for a in load_known_peers(self.state_dir) if a != own]
        return ([self._joined_via] if self._joined_via else []) + known

    def _alive_addresses(self) -> list[str]:
        """Addresses of the other members alive now, by node id (for the known peers)."""
        if self.gossip is None:
            return []
        return [
            m.record.addresses[0]
            for m in sorted(self.gossip.core.members(), key=lambda m: m.record.node_id)
            if m.state.name == "ALIVE"
            and m.record.node_id != self.identity.node_id
            and m.record.addresses
        ]

    async def _keep_known_peers(self) -> None:
        while True:
            await trio.sleep(KNOWN_PEERS_SAVE_INTERVAL_S)
            await self._known_peers.save(self._alive_addresses())

    async def _run_discovery(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Advertise ourselves; members of our cluster found on the LAN become seeds."""
        assert self.membership is not None and self.gossip is not None
        _, port = parse_hostport(self.peers.bound[0])
        discovery = Discovery(
            node_id=self.identity.node_id,
            cluster_id=self.membership.cluster_id,
            ca_fingerprint=ca_fingerprint(self.membership.ca_pubkey),
            protocol_version=PROTOCOL_VERSION,
            port=port,
            interface=self.config.discovery.mdns_interface,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(discovery.run)
            task_status.started()
            async for node in discovery.found:
                if node.cluster_id != self.membership.cluster_id:
                    continue  # another cluster on the same LAN
                known = self.gossip.core.member(node.node_id)
                if known is None or known.state.name in ("DEAD", "LEFT"):
                    log.info("found a member with mDNS", extra={"member": node.node_id})
                    self.gossip.join(list(node.addresses))

    def _gossip_stats(self) -> dict[str, Any] | None:
        return self.gossip.stats() if self.gossip is not None else None

    def peers_view(self) -> list[dict[str, Any]]:
        """Every member as ``vramancer peers`` shows it (schema vramancer.peers.v1)."""
        return with_draining(self.gossip) if self.gossip is not None else []

    # -- API ------------------------------------------------------------------

    async def create_token(self, ttl_s: int, uses: int) -> tuple[str, dict[str, Any]]:
        """Make a join token (admins only; raises PermissionError otherwise)."""
        if self.admin is None:
            raise PermissionError(
                "this node cannot create tokens: it is not a cluster admin (holds no CA key)"
            )
        text, info = self.admin.create_token(wall_clock(), ttl_s, uses)
        log.info("join token created", extra=info)
        if self.audit is not None:
            await self.audit.append(kinds.TOKEN_CREATED, token_audit_body(info))
        return text, info

    async def _serve_api(
        self, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await serve_api(
            create_app(self),
            self.api_socket_path,
            shutdown_trigger=self.shutdown_requested,
            grace_s=self.config.api.shutdown_grace_s,
            task_status=task_status,
        )


async def _watch_signals(node: Node, signals: Any, cancel_scope: trio.CancelScope) -> None:
    async for signum in signals:
        if node.shutdown_requested.is_set():
            log.warning("second signal: stopping now")
            cancel_scope.cancel()
            return
        log.info("shutdown requested", extra={"signal": signal.Signals(signum).name})
        node.shutdown_requested.set()


async def run_daemon(
    config: NodeConfig,
    identity: NodeIdentity,
    state_dir: Path,
    token: str | None = None,
    *,
    notifier: Notifier = NO_NOTIFY,
) -> None:
    """Run a node in the foreground until SIGINT or SIGTERM (``notifier``: systemd)."""
    node_id_var.set(identity.node_id)
    if trace_id_var.get() == "-":  # the CLI normally set the run's trace id already
        trace_id_var.set(new_trace_id())
    lock = StateLock(state_dir)
    lock.acquire()
    try:
        node = Node(config, identity, state_dir, token=token, notifier=notifier)
        # Outside any nursery, so a StartupError reaches the CLI unwrapped.
        await node.become_member()
        node.bind_metrics()
        # Handlers go in before any service starts, so no signal is ever missed.
        with trio.open_signal_receiver(*SHUTDOWN_SIGNALS) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_watch_signals, node, signals, nursery.cancel_scope)
                await node.run()
                nursery.cancel_scope.cancel()  # the node is done: stop watching signals
        log.info("node stopped")
    finally:
        lock.release()
