"""Where a node's checkpoints live: configured directories and fetched ones.

Theory of operation
-------------------
A model is *configured* when the operator named its directory (``runtime.models``;
the id is the directory's name) and *fetched* when this node downloaded it from peers
into ``<state-dir>/models/<model-id>/``.  A configured directory is never written to.
A fetched directory only ever holds verified files under their final names (partial
downloads are hidden ``.<name>.part`` files), so whatever it lists can be served.

Manifests are computed in a worker thread, once per model at a time (a per-model
lock: two peers asking at once cause one hash pass), and cached
(:mod:`vramancer_node.weights.manifest`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import trio

from protocol.weights import Manifest, model_id_problem
from vramancer_node.weights.manifest import compute_manifest

FETCHED_DIR_NAME = "models"
MANIFEST_CACHE_DIR = ("weights", "manifests")


class WeightsStore:
    """The checkpoints this node holds, and their manifests."""

    def __init__(self, state_dir: Path, configured: Callable[[], Mapping[str, Path]]) -> None:
        self.fetched_root = state_dir / FETCHED_DIR_NAME
        self._cache_dir = state_dir.joinpath(*MANIFEST_CACHE_DIR)
        self._configured = configured
        self._locks: dict[str, trio.Lock] = {}

    def is_configured(self, model_id: str) -> bool:
        return model_id in self._configured()

    def fetched_directory(self, model_id: str) -> Path:
        """Where a fetched copy of ``model_id`` lives (ValueError for a bad id)."""
        problem = model_id_problem(model_id)
        if problem is not None:
            raise ValueError(problem)
        return self.fetched_root / model_id

    def directory(self, model_id: str) -> Path | None:
        """The directory holding ``model_id``: configured first, else fetched."""
        configured = self._configured().get(model_id)
        if configured is not None:
            return configured
        if model_id_problem(model_id) is not None:
            return None
        fetched = self.fetched_root / model_id
        return fetched if fetched.is_dir() else None

    def model_ids(self) -> list[str]:
        ids = set(self._configured())
        if self.fetched_root.is_dir():
            ids.update(
                path.name
                for path in self.fetched_root.iterdir()
                if path.is_dir() and model_id_problem(path.name) is None
            )
        return sorted(ids)

    def cache_path(self, model_id: str) -> Path:
        return self._cache_dir / model_id

    async def manifest(self, model_id: str) -> Manifest | None:
        """The manifest of ``model_id`` (None if this node does not hold it)."""
        directory = self.directory(model_id)
        if directory is None:
            return None
        lock = self._locks.setdefault(model_id, trio.Lock())
        async with lock:
            return await trio.to_thread.run_sync(
                compute_manifest, model_id, directory, self.cache_path(model_id)
            )
