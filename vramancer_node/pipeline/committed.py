"""Placements committed through consensus, as the pipeline's placement source.

With ``runtime.placement_source = "consensus"`` the driver and the stage hosts read
placements from the node's Raft state machine (:mod:`vramancer_node.consensuswiring`):
``committed_placement`` is the epoch every member applied, and a model with none is
planned by the leader and committed (``propose_placement``) on its first generation.

Model ids: the pipeline names a model by its checkpoint directory's name; consensus
may name it by ``_name_or_path`` in ``config.json`` (``org/name``).  The adapter maps
one to the other with consensus's own rule (``model_id_for``), read once per model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

from protocol.placement import Placement
from vramancer_node.consensus import (
    PlacementRefused,
    PlacementRequestError,
    ProposalFailed,
    ProposalRejected,
)
from vramancer_node.consensus.placing import model_id_for
from vramancer_node.pipeline.errors import PlacementUnavailableError
from vramancer_node.pipeline.models import ModelRegistry

CONFIG_FILE_NAME = "config.json"


class ConsensusNode(Protocol):
    """What the adapter needs from :class:`vramancer_node.daemon.Node`."""

    def committed_placement(self, model_id: str) -> tuple[int, Placement] | None: ...

    async def propose_placement(
        self, model_dir: Path, context_tokens: int, dtype: str
    ) -> tuple[int, Placement]: ...


class ConsensusPlacementSource:
    """A :class:`~vramancer_node.pipeline.placements.PlacementSource` over Raft."""

    def __init__(self, node: ConsensusNode, models: ModelRegistry) -> None:
        self.node = node
        self.models = models
        self._ids: dict[str, str] = {}

    def consensus_id(self, model_id: str) -> str:
        """The id consensus knows ``model_id`` by."""
        if model_id not in self._ids:
            directory = self.models.entry(model_id).directory
            try:
                config = json.loads((directory / CONFIG_FILE_NAME).read_text())
                self._ids[model_id] = model_id_for(directory, config)
            except (OSError, ValueError):
                return model_id  # an unreadable config fails later, where it is loaded
        return self._ids[model_id]

    def committed_placement(self, model_id: str) -> tuple[int, Placement] | None:
        return self.node.committed_placement(self.consensus_id(model_id))

    async def propose_placement(
        self, model_dir: Path, context_tokens: int, dtype: str
    ) -> tuple[int, Placement]:
        try:
            return await self.node.propose_placement(model_dir, context_tokens, dtype)
        except (PlacementRequestError, PlacementRefused, ProposalRejected, ProposalFailed) as exc:
            raise PlacementUnavailableError(f"{Path(model_dir).name}: {exc}") from exc
