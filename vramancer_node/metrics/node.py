"""Collectors for what every node runs: build, state, membership, gossip traffic,
handshakes, audit log and devices.

Each collector reads the service's own counters at scrape time (see the package
docstring).  A service that has not started yet exports nothing, so a scrape during
start-up is short rather than wrong.  Label values come from bounded sets: member
states, drop reasons, handshake outcomes (``ok`` and the refusal reasons of
:mod:`protocol.frames`), device indexes of this machine.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from vramancer_node import PROTOCOL_VERSION, __version__
from vramancer_node.metrics import NodeMetrics
from vramancer_node.metrics import families as f

if TYPE_CHECKING:
    from vramancer_node.daemon import Node

NODE_STATES = ("starting", "running", "stopping")
MEMBER_STATES = ("alive", "suspect", "dead", "left")
RTT_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Loopback to a slow WAN link."""
MILLISECONDS_PER_SECOND = 1000.0


def register_node_collectors(metrics: NodeMetrics, node: Node) -> None:
    """Register the collectors of the services every node runs."""
    metrics.register_collector(lambda: _build_and_state(node), name="node")
    metrics.register_collector(lambda: _handshakes(node), name="handshakes")
    metrics.register_collector(lambda: _membership(node), name="membership")
    metrics.register_collector(lambda: _audit(node), name="audit")
    metrics.register_collector(lambda: _devices(node), name="devices")


def _build_and_state(node: Node) -> Iterator[Metric]:
    yield f.info(
        "build",
        "The running software: version, wire protocol version, Python version.",
        {
            "version": __version__,
            "protocol_version": str(PROTOCOL_VERSION),
            "python_version": platform.python_version(),
        },
    )
    yield f.labelled_gauge(
        "node_state",
        "1 for the node's current state (starting, running, stopping), else 0.",
        "state",
        {state: float(node.state == state) for state in NODE_STATES},
    )
    yield f.gauge("node_uptime_seconds", "Time since the node started.", node.uptime_s())
    yield f.gauge(
        "node_admin", "1 when this node holds the cluster CA key.", float(node.admin is not None)
    )


def _handshakes(node: Node) -> Iterator[Metric]:
    yield f.labelled_counter(
        "handshakes",
        "Secure-channel handshakes by result: ok, or why it was refused or failed.",
        "result",
        node.peers.handshakes,
    )


def _membership(node: Node) -> Iterator[Metric]:
    gossip = node.gossip
    if gossip is None:
        return
    core: dict[str, int] = gossip.core.metrics()
    yield f.labelled_gauge(
        "membership_members",
        "Members this node knows (itself included), by SWIM state.",
        "state",
        {state: core.get(f"members_{state}", 0) for state in MEMBER_STATES},
    )
    yield f.labelled_counter(
        "membership_member_events",
        "Membership changes of other members seen here (suspected = suspicions raised).",
        "event",
        gossip.member_events,
    )
    yield f.counter(
        "membership_refutations",
        "Times this node refuted a suspicion or death rumour about itself.",
        core.get("refutations", 0),
    )
    yield f.gauge(
        "membership_health_score",
        "Lifeguard local health multiplier (0 is healthy; probes stretch as it grows).",
        core.get("health_score", 0),
    )
    rtt_s = [ms / MILLISECONDS_PER_SECOND for _peer, ms in gossip.core.local.rtt_ms]
    yield f.gauge_histogram(
        "membership_peer_rtt_seconds",
        "Smoothed probe round-trip times to the nearest members, as published now "
        "(a gauge histogram: the current distribution, not a count of probes).",
        RTT_BUCKETS_S,
        rtt_s,
    )
    yield f.histogram_family(
        "membership_probe_rtt_seconds",
        "Round trip of every acked probe (direct acks only; relayed ones measure a detour).",
        gossip.probe_rtt,
    )
    yield f.labelled_counter(
        "membership_datagrams_dropped",
        "Gossip datagrams dropped, by reason (seal: no key opens it; malformed; send_failed).",
        "reason",
        gossip.dropped,
    )
    yield f.labelled_counter(
        "membership_sessions",
        "Reliable gossip exchanges over secure sessions, by result.",
        "result",
        gossip.sessions,
    )
    yield from _queues(core)
    yield from _traffic(gossip.traffic)


def _queues(core: dict[str, int]) -> Iterator[Metric]:
    yield f.gauge(
        "membership_broadcast_queue_length",
        "Broadcasts waiting to be piggybacked.",
        core.get("broadcast_queue_length", 0),
    )
    yield f.gauge(
        "membership_outbox_length", "Messages queued for sending.", core.get("outbox_length", 0)
    )
    for key, doc in (
        ("broadcasts_dropped", "Broadcasts dropped because the queue was full."),
        ("outbox_dropped", "Messages dropped because the outbox was full."),
        ("events_dropped", "Membership events dropped because nobody drained them."),
        ("members_dropped", "Members forgotten because the member table was full."),
    ):
        yield f.counter(f"membership_{key}", doc, core.get(key, 0))


def _traffic(traffic: Any) -> Iterator[Metric]:
    for direction in ("sent", "received"):
        yield f.labelled_counter(
            f"gossip_{direction}_bytes",
            f"Gossip bytes {direction}: sealed UDP datagrams, and messages over secure sessions.",
            "transport",
            {t: traffic.get(f"{t}_{direction}_bytes", 0) for t in ("udp", "stream")},
        )
        yield f.labelled_counter(
            f"gossip_{direction}_messages",
            f"Gossip datagrams and session messages {direction}.",
            "transport",
            {t: traffic.get(f"{t}_{direction}", 0) for t in ("udp", "stream")},
        )


def _audit(node: Node) -> Iterator[Metric]:
    audit = node.audit
    if audit is None:
        return
    stats = audit.stats()
    yield f.gauge("audit_log_records", "Records in the audit log (its size).", stats["size"])
    yield f.gauge(
        "audit_checkpointed_records",
        "Tree size of the latest signed checkpoint; lagging the size means checkpoints stall.",
        stats.get("checkpointed_size", 0),
    )
    yield f.counter(
        "audit_commits", "Group commits (one transaction, one fsync).", stats["commits_total"]
    )
    yield f.histogram_family(
        "audit_commit_duration_seconds", "Time of each group commit.", audit.commit_duration_s
    )
    yield f.counter(
        "audit_verify_failures",
        "Whole-log verifications (vramancer audit verify) that found the log damaged.",
        stats.get("verify_failures_total", 0),
    )
    yield f.labelled_counter(
        "audit_cosign_exchanges",
        "Checkpoint exchanges (cosigning) this node opened with members, by result.",
        "result",
        {"ok": 0, "failed": 0, **node.cosign_exchanges},
    )
    yield f.gauge("audit_map_size_bytes", "Size of the LMDB memory map.", stats["map_size_bytes"])
    yield f.gauge(
        "audit_queue_records", "Appends waiting for the next commit.", stats["queue_records"]
    )
    yield f.gauge(
        "audit_queue_records_max", "Bound of the append queue.", stats["queue_records_max"]
    )


def _devices(node: Node) -> Iterator[Metric]:
    monitor = node.devices
    if monitor is None:
        return
    devices = monitor.devices
    labels = ["kind", "index"]
    yield f.gauge_rows(
        "device_memory_total_bytes",
        "Memory of each local device usable for model weights.",
        labels,
        [
            ([d.kind, str(d.index)], d.memory_total_bytes)
            for d in devices
            if d.memory_total_bytes is not None
        ],
    )
    yield f.gauge_rows(
        "device_memory_free_bytes",
        "Free memory of each local device at the last probe.",
        labels,
        [
            ([d.kind, str(d.index)], d.memory_free_bytes)
            for d in devices
            if d.memory_free_bytes is not None
        ],
    )
    yield f.gauge_rows(
        "device_info",
        "1 per local device, with its model name.",
        [*labels, "name"],
        [([d.kind, str(d.index), d.name or ""], 1.0) for d in devices],
    )
    yield f.gauge_rows(
        "device_usable",
        "1 when the device was queried fully enough to place work on it.",
        labels,
        [([d.kind, str(d.index)], float(d.usable)) for d in devices],
    )
