"""The pipeline across daemons: stage hosting, the driver and placements.

Theory of operation
-------------------
A generation request reaches one node, the *driver*.  It takes the model's placement
(stages in order, each a node and a layer range, under an *epoch*), opens a ``stage``
session to the first stage's node, and sends the prompt and then one token per step.
Each stage runs its layers and forwards hidden states to the next over its own
session; the last stage samples and the token travels back along the chain to the
driver, which streams it to the caller.  See ``docs/pipeline.md``.

================  ===============================================================
``driver``        :class:`Driver`, :class:`TokenEvent`: one generation, streamed
``host``          :class:`StageHost`: serve stage sessions, relay answers and errors
``residency``     the stage each model has here, loading it, epoch fencing
``sessions``      per-session KV caches, bounded, LRU-evicted, counted
``placements``    :class:`PlacementSource` and this node's interim implementation
``models``        ``runtime.models``: model ids to checkpoint directories
``tensors``       tensors to activation bodies and back (no pickle, no torch.load)
``routes``        ``POST /v1/generate`` and ``/v1/pipeline/*`` on the local API
``errors``        :class:`PipelineError` and its subclasses
================  ===============================================================

The node method is ``node.generate_stream(model_id, prompt_ids, params)``
(:mod:`vramancer_node.pipelinewiring`): an async iterator of :class:`TokenEvent`.
"""

from __future__ import annotations

from vramancer_node.pipeline.driver import (
    FINISH_LENGTH,
    FINISH_STOP,
    Driver,
    DriverSettings,
    TokenEvent,
)
from vramancer_node.pipeline.errors import (
    ContextTooLongError,
    PipelineError,
    PlacementUnavailableError,
    StageError,
    StaleEpochError,
    UnknownModelError,
)
from vramancer_node.pipeline.host import HostSettings, StageHost
from vramancer_node.pipeline.models import ModelRegistry
from vramancer_node.pipeline.placements import (
    LocalPlacementSource,
    PlacementSource,
    even_placement,
    placement_from_json,
    placement_to_json,
)

__all__ = [
    "FINISH_LENGTH",
    "FINISH_STOP",
    "ContextTooLongError",
    "Driver",
    "DriverSettings",
    "HostSettings",
    "LocalPlacementSource",
    "ModelRegistry",
    "PipelineError",
    "PlacementSource",
    "PlacementUnavailableError",
    "StageError",
    "StageHost",
    "StaleEpochError",
    "TokenEvent",
    "UnknownModelError",
    "even_placement",
    "placement_from_json",
    "placement_to_json",
]
