"""The pipeline in a running node: host stages, drive generations.

A mixin of :class:`vramancer_node.daemon.Node`.  ``_start_pipeline`` builds the stage
host (serving the ``stage`` service on the peer listener) and the driver;
``generate_stream`` is the one method the API and the OpenAI endpoints generate
through.

Placements come from a :class:`~vramancer_node.pipeline.placements.PlacementSource`:
this node's :class:`~vramancer_node.pipeline.placements.LocalPlacementSource`
(:attr:`placements`, ``runtime.placement_source = "local"``, the default) or the
placements committed through Raft (``"consensus"``,
:mod:`vramancer_node.pipeline.committed`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, cast

import torch

from protocol.membership import MemberRecord
from vramancer_node.nodeparts import NodeParts
from vramancer_node.pipeline import (
    Driver,
    DriverSettings,
    HostSettings,
    LocalPlacementSource,
    ModelRegistry,
    PipelineError,
    StageHost,
    TokenEvent,
)
from vramancer_node.pipeline.committed import ConsensusNode, ConsensusPlacementSource
from vramancer_node.pipeline.metrics import collect_driver
from vramancer_node.pipeline.placements import PlacementSource
from vramancer_node.runtime import SamplingParams


class PipelineWiring(NodeParts):
    """Pipeline duties of a node (mixed into ``Node``)."""

    advertised_address: Callable[[], str]
    models: ModelRegistry
    placements: LocalPlacementSource
    stage_host: StageHost | None
    driver: Driver | None

    def _init_pipeline(self) -> None:
        """Called from ``Node.__init__``: nothing runs yet."""
        self.models = ModelRegistry(self.config.runtime.models)
        self.placements = LocalPlacementSource(self._live_member_records, self._epoch_seen)
        self.stage_host = None
        self.driver = None

    def _start_pipeline(self) -> None:
        """Serve the ``stage`` service and accept generations (peers and gossip run)."""
        runtime = self.config.runtime
        if runtime.threads:
            torch.set_num_threads(runtime.threads)
        placements: PlacementSource = self.placements
        if runtime.placement_source == "consensus":  # committed through Raft
            placements = ConsensusPlacementSource(cast(ConsensusNode, self), self.models)
        self.stage_host = StageHost(
            self.identity.node_id,
            self.models,
            placements,
            self.peers,
            HostSettings(
                dtype=runtime.dtype,
                device=runtime.device,
                sessions_max=runtime.sessions_max,
                session_idle_timeout_s=runtime.session_idle_timeout_s,
                context_tokens_max=runtime.context_tokens,
            ),
            fetch=getattr(self, "ensure_model_files", None),
        )
        self.stage_host.register()
        self.driver = Driver(
            self.models,
            placements,
            self.peers,
            self.member_address,
            DriverSettings(
                dtype=runtime.dtype,
                context_tokens=runtime.context_tokens,
                prefill_chunk_tokens=runtime.prefill_chunk_tokens,
                step_timeout_s=runtime.step_timeout_s,
            ),
            fetch=getattr(self, "ensure_model_files", None),
        )
        driver = self.driver
        self.metrics.register_collector(lambda: collect_driver(driver.metrics), name="runtime")

    def generate_stream(
        self, model_id: str, prompt_ids: Sequence[int], params: SamplingParams
    ) -> AsyncIterator[TokenEvent]:
        """Generate after ``prompt_ids`` with ``model_id`` across the cluster.

        An async iterator of :class:`~vramancer_node.pipeline.TokenEvent`, the last one
        carrying ``finish_reason``; closing it early ends the generation.  Raises
        :class:`~vramancer_node.pipeline.PipelineError` subclasses (unknown model,
        prompt longer than the context, no placement, a stage's refusal such as a
        stale epoch) and ``ValueError`` for an empty prompt or an id outside the
        vocabulary.
        """
        if self.driver is None:
            raise PipelineError("the node is not running yet")
        return self.driver.generate_stream(model_id, prompt_ids, params)

    def pipeline_status(self) -> dict[str, Any]:
        """Models, placements and stage sessions (schema vramancer.pipeline.v1)."""
        return {
            "models": self.models.ids(),
            "host": self.stage_host.status() if self.stage_host is not None else None,
        }

    def member_address(self, node_id: str) -> str | None:
        """Where ``node_id`` listens for peers, if it is us or a live member."""
        if node_id == self.identity.node_id:
            return self.advertised_address()
        if self.gossip is None:
            return None
        member = self.gossip.core.member(node_id)
        if member is None or member.state.name != "ALIVE" or not member.record.addresses:
            return None
        address: str = member.record.addresses[0]
        return address

    def _epoch_seen(self, model_id: str) -> int:
        return self.stage_host.epoch_of(model_id) if self.stage_host is not None else 0

    def _live_member_records(self) -> list[MemberRecord]:
        if self.gossip is None:
            return []
        return [m.record for m in self.gossip.core.members() if m.state.name == "ALIVE"]
