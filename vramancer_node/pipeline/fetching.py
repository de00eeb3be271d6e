"""Getting the checkpoint files of a stage this node was assigned but does not hold.

Theory of operation
-------------------
A stage open may name a model that is not in this node's ``runtime.models``.  The
node then fetches what its stage needs from the members that serve the model
(``node.ensure_model_files``, :mod:`vramancer_node.weights`: SHA-256 verified,
resumable) into ``<state-dir>/models/<model-id>/``:

1. ``config.json``;
2. ``model.safetensors.index.json`` if the members have one (a sharded checkpoint),
   and then only the shards holding this stage's tensors (the stage's checkpoint keys
   are computed on the ``meta`` device: no memory, no weights);
3. otherwise the single ``model.safetensors``.

The directory is then added to the model registry, and the stage loads from it as
from any configured checkpoint.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from protocol.pipeline import StageOpen
from vramancer_node.logs import get_logger
from vramancer_node.pipeline.models import ModelRegistry
from vramancer_node.runtime import CheckpointError, read_model_config
from vramancer_node.runtime.checkpoint import INDEX_FILE_NAME, SINGLE_FILE_NAME, Checkpoint
from vramancer_node.runtime.stage import Stage
from vramancer_node.weights import NoSourceError, WeightsError

log = get_logger("pipeline")

CONFIG_FILE_NAME = "config.json"

FetchFiles = Callable[[str, Sequence[str] | None], Awaitable[Path]]
"""``ensure_model_files(model_id, files)``: the directory once ``files`` are there."""


class StageFilesError(Exception):
    """The files of a stage could not be fetched (the message says why)."""


async def fetch_stage_files(fetch: FetchFiles, models: ModelRegistry, opened: StageOpen) -> None:
    """Fetch what ``opened``'s stage needs and register the model (see module doc)."""
    model_id = opened.model_id
    try:
        directory = await fetch(model_id, [CONFIG_FILE_NAME])
        try:
            await fetch(model_id, [INDEX_FILE_NAME])
            sharded = True
        except NoSourceError:  # the members have the config, so: not sharded
            sharded = False
        files = _shards_of_stage(directory, opened) if sharded else [SINGLE_FILE_NAME]
        log.info("fetching stage files", extra={"model": model_id, "files": files})
        await fetch(model_id, files)
    except (CheckpointError, OSError, ValueError) as exc:
        raise StageFilesError(f"{model_id}: {exc}") from exc
    except WeightsError as exc:
        raise StageFilesError(f"{model_id}: fetching its files failed: {exc}") from exc
    models.add(model_id, directory)


def _shards_of_stage(directory: Path, opened: StageOpen) -> list[str]:
    config = read_model_config(directory)
    stage = opened.stage
    meta = Stage(
        config,
        stage.first_layer,
        stage.last_layer_exclusive,
        has_embedding=opened.index == 0,
        has_head=opened.is_last,
        device="meta",
    )
    checkpoint = Checkpoint(directory)
    keys = set(meta.checkpoint_keys().values())
    return sorted({checkpoint.file_of(key).name for key in keys})
