"""Collectors for the cluster-wide parts: consensus (Raft), committed placements, and
the pipeline stages this node hosts.

They read ``node.consensus`` (:class:`vramancer_node.consensus.service.ConsensusService`)
at scrape time and export nothing until it has started.  Elections show as
``vramancer_consensus_term`` steps (every election bumps the term); leader changes
as ``vramancer_consensus_leader_changes_total`` counted here between scrapes of the
same process.  The ``model`` label of placement metrics is bounded by the models
deployed on the cluster (a handful), never by requests.

The pipeline driver's numbers (tokens, time to first token, per-token and per-stage
time) belong to the driver, which registers its own collector through
:meth:`vramancer_node.metrics.NodeMetrics.register_collector` where it is wired in;
docs/metrics.md lists the names it uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.metrics_core import Metric

from protocol.raft.roles import Role
from vramancer_node.metrics import NodeMetrics
from vramancer_node.metrics import families as f

RAFT_ROLES = tuple(role.value for role in Role)


class ConsensusCollector:
    """Raft term, role, leader, indexes, and committed placements of ``node``."""

    def __init__(self, node: Any) -> None:
        self._node = node
        self._leader: str | None = None
        self.leader_changes_total = 0

    def __call__(self) -> Iterator[Metric]:
        service = getattr(self._node, "consensus", None)
        if service is None:
            return
        status = service.status()
        if status.get("role") in (None, "starting"):
            return
        leader = status.get("leader")
        if leader != self._leader:
            if self._leader is not None or leader is not None:
                self.leader_changes_total += 1
            self._leader = leader
        yield f.gauge(
            "consensus_term", "Current Raft term (each election bumps it).", status["term"]
        )
        roles = set(RAFT_ROLES) | {status["role"]}
        yield f.labelled_gauge(
            "consensus_role",
            "1 for this node's Raft role, else 0.",
            "role",
            {role: float(role == status["role"]) for role in sorted(roles)},
        )
        yield f.gauge(
            "consensus_has_leader", "1 when this node knows a leader.", float(leader is not None)
        )
        yield f.counter(
            "consensus_leader_changes",
            "Leader changes this node saw (sampled at scrapes).",
            self.leader_changes_total,
        )
        elections = status.get("elections", {})
        yield f.counter(
            "consensus_elections",
            "Elections this node started as a candidate (PreVote rounds not counted).",
            elections.get("started", 0),
        )
        yield f.counter(
            "consensus_elections_won",
            "Elections this node won (it became leader).",
            elections.get("won", 0),
        )
        yield f.gauge("consensus_commit_index", "Raft commit index.", status["commit_index"])
        yield f.gauge(
            "consensus_applied_index", "Last log index applied here.", status["applied_index"]
        )
        yield f.gauge(
            "consensus_voters", "Voting members of the Raft configuration.", len(status["voters"])
        )
        yield f.gauge(
            "consensus_learners", "Non-voting members (learners).", len(status["learners"])
        )
        yield f.counter(
            "consensus_rejected_commands",
            "Committed entries that changed nothing (rejected the same way everywhere).",
            status.get("rejected", 0),
        )
        transport = status.get("transport") or {}
        dropped = transport.get("dropped")
        if isinstance(dropped, dict):
            yield f.labelled_counter(
                "consensus_messages_dropped", "Raft messages dropped, by reason.", "reason", dropped
            )
        yield from _placements(service)


def _placements(service: Any) -> Iterator[Metric]:
    placements = getattr(getattr(service, "control", None), "placements", None)
    if not isinstance(placements, dict):
        return
    rows = sorted(placements.items())
    yield f.gauge_rows(
        "placement_epoch",
        "Committed placement epoch of each model.",
        ["model"],
        [([model], committed.placement.epoch) for model, committed in rows],
    )
    yield f.gauge_rows(
        "placement_stages",
        "Pipeline stages of each model's committed placement.",
        ["model"],
        [([model], len(committed.placement.stages)) for model, committed in rows],
    )
    yield f.gauge_rows(
        "placement_predicted_token_duration_seconds",
        "The optimiser's predicted decode time per token (0: unknown).",
        ["model"],
        [([model], committed.placement.decode_ns_per_token / 1e9) for model, committed in rows],
    )


def collect_stage_host(node: Any) -> Iterator[Metric]:
    """The stages this node hosts: sessions (bounded LRU), KV-cache bytes, messages."""
    host = getattr(node, "stage_host", None)
    if host is None:
        return
    status = host.status()
    stages: dict[str, float] = {}
    for stage in status.get("stages", []):
        stages[stage["model"]] = stages.get(stage["model"], 0) + 1
    yield f.labelled_gauge(
        "pipeline_hosted_stages", "Stages loaded here, by model.", "model", stages
    )
    yield f.gauge("pipeline_sessions", "Open stage sessions.", status["sessions_active"])
    yield f.gauge("pipeline_sessions_max", "Bound of open stage sessions.", status["sessions_max"])
    for key, doc in (
        ("opened", "Stage sessions opened."),
        ("evicted", "Stage sessions evicted (least recently used) to respect the bound."),
        ("refused", "Stage sessions ended with an error sent upstream."),
    ):
        yield f.counter(f"pipeline_sessions_{key}", doc, status[f"sessions_{key}_total"])
    yield f.labelled_counter(
        "pipeline_session_refusals", "Stage session refusals, by code.", "code", status["refusals"]
    )
    yield f.gauge(
        "pipeline_kv_cache_bytes",
        "Bytes held by the KV caches of open sessions.",
        status["kv_cache_bytes"],
    )
    yield f.labelled_counter(
        "pipeline_stage_messages",
        "Stage-session messages handled, by kind.",
        "kind",
        status["messages"],
    )


def register_cluster_collectors(metrics: NodeMetrics, node: Any) -> None:
    metrics.register_collector(ConsensusCollector(node), name="consensus")
    metrics.register_collector(lambda: collect_stage_host(node), name="pipeline")
