"""Where a model's stages run: the placement source a driver and a stage host consult.

Theory of operation
-------------------
The cluster agrees on placements through Raft (DESIGN.md section 6): the node exposes
``committed_placement(model_id)`` and ``propose_placement(...)``.
:class:`PlacementSource` is that interface; the pipeline code depends on nothing else.
``runtime.placement_source = "consensus"`` uses the committed placements
(:mod:`vramancer_node.pipeline.committed`; what a cluster and ``vramancer-node demo``
run).

:class:`LocalPlacementSource` (``"local"``, the default) is this node's own book of
placements, a development and testing source (tests, benchmarks, one driver):

* *explicit*: a placement given as JSON (``PUT /v1/pipeline/placements/{model}``)
  with its epoch, or else one above every epoch this node has known for the model
  (its own placements, and the epochs its stages ran);
* *computed*: :func:`protocol.placement.place` over the gossiped member records,
  epoch 1 for a model's first placement (numbered like an explicit one after that);
* *even*: the layers split as evenly as possible over given nodes, in the given order
  (tests and benchmarks, where every node is the same CPU and the optimiser would
  rightly put a tiny model on one node; through consensus the same split is
  ``vramancer placement propose --split even``).

The driver sends the placement it uses with every session open, so stage nodes need
no book of their own: they fence on epochs (see :mod:`vramancer_node.pipeline.host`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from protocol.membership import MemberRecord
from protocol.placement import (
    ModelProfile,
    Placement,
    PlacementError,
    PlacementRequest,
    Stage,
    links_from_records,
    nodes_from_records,
    place,
)
from vramancer_node.pipeline.errors import PlacementUnavailableError

CONFIG_FILE_NAME = "config.json"


class PlacementSource(Protocol):
    """What the pipeline needs to know about placements (the Node will provide it)."""

    def committed_placement(self, model_id: str) -> tuple[int, Placement] | None:
        """The placement in force for ``model_id`` and its epoch, if any."""
        ...

    async def propose_placement(
        self, model_dir: Path, context_tokens: int, dtype: str
    ) -> tuple[int, Placement]:
        """Compute a placement of the checkpoint in ``model_dir`` and put it in force."""
        ...


class LocalPlacementSource:
    """This node's own placements (see the module docstring)."""

    def __init__(
        self,
        records: Callable[[], Iterable[MemberRecord]],
        epoch_seen: Callable[[str], int] = lambda model_id: 0,
    ) -> None:
        self._records = records
        self._epoch_seen = epoch_seen
        """The highest epoch of a model this node has run (as a stage); a new local
        placement takes a higher one, so the stages take it up."""
        self._placements: dict[str, tuple[int, Placement]] = {}

    def committed_placement(self, model_id: str) -> tuple[int, Placement] | None:
        return self._placements.get(model_id)

    def all(self) -> dict[str, tuple[int, Placement]]:
        return dict(self._placements)

    def set_placement(
        self, model_id: str, placement: Placement, epoch: int | None = None
    ) -> tuple[int, Placement]:
        """Put ``placement`` in force, at ``epoch`` or one above any epoch known here."""
        previous = self._placements.get(model_id)
        if epoch is None:
            epoch = max(previous[0] if previous else 0, self._epoch_seen(model_id)) + 1
        if epoch < 1:
            raise ValueError(f"epoch must be >= 1, got {epoch}")
        self._placements[model_id] = (epoch, placement)
        return epoch, placement

    async def propose_placement(
        self, model_dir: Path, context_tokens: int, dtype: str
    ) -> tuple[int, Placement]:
        model_id = Path(model_dir).name
        try:
            raw = json.loads((Path(model_dir) / CONFIG_FILE_NAME).read_text())
            profile = ModelProfile.from_hf_config(raw, dtype)
            records = list(self._records())
            previous = self._placements.get(model_id)
            placement = place(
                PlacementRequest(
                    profile=profile,
                    nodes=nodes_from_records(records),
                    links=links_from_records(records),
                    context_tokens=context_tokens,
                    previous=previous[1] if previous else None,
                )
            )
        except (OSError, ValueError, PlacementError) as exc:
            raise PlacementUnavailableError(f"cannot place {model_id}: {exc}") from exc
        if previous is not None and placement.stages == previous[1].stages:
            return previous
        return self.set_placement(model_id, placement)


def even_placement(node_ids: Iterable[str], num_layers: int) -> Placement:
    """``num_layers`` split over ``node_ids`` in order, the first ones taking one more."""
    nodes = list(node_ids)
    if not nodes:
        raise ValueError("no nodes to place onto")
    nodes = nodes[:num_layers]
    base, extra = divmod(num_layers, len(nodes))
    stages, first = [], 0
    for position, node_id in enumerate(nodes):
        count = base + (1 if position < extra else 0)
        stages.append(
            Stage(
                node_id=node_id, device_index=0, first_layer=first,
                last_layer_exclusive=first + count,
            )
        )  # fmt: skip
        first += count
    return Placement(stages=tuple(stages), method="exact")


def placement_to_json(model_id: str, epoch: int, placement: Placement) -> dict[str, Any]:
    """The JSON form (``vramancer.placement.v1`` minus the schema tag)."""
    return {
        "model": model_id,
        "epoch": epoch,
        "method": placement.method,
        "decode_s_per_token": placement.decode_s_per_token,
        "stages": [
            {
                "node_id": stage.node_id,
                "device_index": stage.device_index,
                "first_layer": stage.first_layer,
                "last_layer_exclusive": stage.last_layer_exclusive,
            }
            for stage in placement.stages
        ],
    }


def placement_from_json(body: Mapping[str, Any]) -> Placement:
    """A placement from ``{"stages": [{node_id, first_layer, last_layer_exclusive,
    device_index?}, ...]}``; ValueError naming what is wrong."""
    stages = body.get("stages")
    if not isinstance(stages, list) or not stages:
        raise ValueError("stages must be a non-empty list")
    parsed = []
    for position, item in enumerate(stages):
        if not isinstance(item, dict):
            raise ValueError(f"stages[{position}] must be an object")
        try:
            parsed.append(
                Stage(
                    node_id=item["node_id"],
                    device_index=item.get("device_index", 0),
                    first_layer=item["first_layer"],
                    last_layer_exclusive=item["last_layer_exclusive"],
                )
            )
        except KeyError as exc:
            raise ValueError(f"stages[{position}] lacks {exc.args[0]!r}") from None
        except ValueError as exc:
            raise ValueError(f"stages[{position}]: {exc}") from None
    return Placement(stages=tuple(parsed), method="exact")
