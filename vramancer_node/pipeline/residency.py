"""Which stage of each model this node holds, under which placement epoch.

Theory of operation
-------------------
One stage per model is resident: the layer range the latest accepted epoch gives this
node.  :meth:`StageResidency.ensure_loaded` loads it on first use
(:func:`vramancer_node.runtime.load_stage`, only the range's tensors, in a worker
thread, one load per model at a time); a newer epoch with the same range only moves
the epoch on, one with another range replaces the stage.  Sessions of a replaced
epoch are told by :meth:`current_epoch` on their next message.

Fencing (:meth:`check_epoch`): the epoch in force is the higher of the committed
placement's (from the :class:`~vramancer_node.pipeline.placements.PlacementSource`)
and the highest epoch accepted here.  Anything older is refused ``stale_epoch``; under
the committed epoch itself, the stage asked for must be the committed one.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, replace
from typing import Any

import trio

from protocol.pipeline import StageOpen
from vramancer_node.logs import get_logger
from vramancer_node.pipeline.models import ModelRegistry, resolve_device
from vramancer_node.pipeline.placements import PlacementSource
from vramancer_node.runtime import CheckpointError
from vramancer_node.runtime.stage import Stage, load_stage

log = get_logger("pipeline")


class Refusal(Exception):
    """End a stage session with an ERROR message ``code: detail`` sent upstream."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True, kw_only=True)
class LoadedStage:
    model_id: str
    epoch: int
    first_layer: int
    last_layer_exclusive: int
    stage: Stage


class StageResidency:
    """The loaded stages and the epochs in force, by model id."""

    def __init__(
        self,
        node_id: str,
        models: ModelRegistry,
        placements: PlacementSource,
        *,
        dtype: str,
        device: str,
    ) -> None:
        self.node_id = node_id
        self.models = models
        self.placements = placements
        self.dtype = dtype
        self.device = device
        self._loaded: dict[str, LoadedStage] = {}
        self._epochs: dict[str, int] = {}
        self._load_locks: dict[str, trio.Lock] = collections.defaultdict(trio.Lock)

    def current_epoch(self, model_id: str) -> int:
        """The highest epoch of ``model_id`` accepted here (0: none)."""
        return self._epochs.get(model_id, 0)

    def status(self) -> list[dict[str, Any]]:
        return [
            {
                "model": loaded.model_id,
                "epoch": loaded.epoch,
                "first_layer": loaded.first_layer,
                "last_layer_exclusive": loaded.last_layer_exclusive,
                "device": str(loaded.stage.device),
                "dtype": str(loaded.stage.dtype).removeprefix("torch."),
            }
            for loaded in self._loaded.values()
        ]

    def check_epoch(self, opened: StageOpen) -> None:
        """Refuse an epoch below the one in force here (see the module docstring)."""
        committed = self.placements.committed_placement(opened.model_id)
        floor = max(committed[0] if committed else 0, self.current_epoch(opened.model_id))
        if opened.epoch < floor:
            raise Refusal(
                "stale_epoch",
                f"{opened.model_id}: this node runs placement epoch {floor}, "
                f"the request epoch {opened.epoch}",
            )
        if committed is not None and committed[0] == opened.epoch:
            ours = [s for s in committed[1].stages if s.node_id == self.node_id]
            asked = opened.stage
            if not ours or (ours[0].first_layer, ours[0].last_layer_exclusive) != (
                asked.first_layer,
                asked.last_layer_exclusive,
            ):
                raise Refusal(
                    "not_assigned", f"epoch {opened.epoch} assigns other layers to this node"
                )

    async def ensure_loaded(self, opened: StageOpen) -> tuple[LoadedStage, bool]:
        """The stage ``opened`` asks for, loaded; True when it replaced another epoch."""
        stage = opened.stage
        key = (opened.epoch, stage.first_layer, stage.last_layer_exclusive)
        async with self._load_locks[opened.model_id]:
            self.check_epoch(opened)  # another open may have moved the epoch on
            loaded = self._loaded.get(opened.model_id)
            if loaded is not None and key == (
                loaded.epoch,
                loaded.first_layer,
                loaded.last_layer_exclusive,
            ):
                return loaded, False
            if loaded is not None and loaded.epoch == opened.epoch:
                raise Refusal(
                    "not_assigned",
                    f"epoch {opened.epoch} already gave this node layers "
                    f"[{loaded.first_layer}, {loaded.last_layer_exclusive})",
                )
            if loaded is not None and (loaded.first_layer, loaded.last_layer_exclusive) == key[1:]:
                loaded = replace(loaded, epoch=opened.epoch)  # same weights, newer epoch
            else:
                self._loaded.pop(opened.model_id, None)
                loaded = await self._load(opened)
            self._loaded[opened.model_id] = loaded
            self._epochs[opened.model_id] = opened.epoch
            return loaded, True

    async def _load(self, opened: StageOpen) -> LoadedStage:
        stage = opened.stage
        entry = self.models.entry(opened.model_id)
        device = resolve_device(self.device)
        log.info(
            "loading stage",
            extra={
                "model": opened.model_id,
                "epoch": opened.epoch,
                "layers": [stage.first_layer, stage.last_layer_exclusive],
                "device": str(device),
            },
        )
        try:
            module = await trio.to_thread.run_sync(
                lambda: load_stage(
                    entry.directory,
                    stage.first_layer,
                    stage.last_layer_exclusive,
                    has_embedding=opened.index == 0,
                    has_head=opened.is_last,
                    dtype=self.dtype,
                    device=device,
                    config=self.models.config(opened.model_id),
                )
            )
        except (CheckpointError, ValueError, RuntimeError, OSError) as exc:
            raise Refusal("load_failed", f"{opened.model_id}: {exc}") from None
        return LoadedStage(
            model_id=opened.model_id,
            epoch=opened.epoch,
            first_layer=stage.first_layer,
            last_layer_exclusive=stage.last_layer_exclusive,
            stage=module,
        )
