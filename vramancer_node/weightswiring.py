"""Weight distribution in a running node: serve checkpoint files, fetch missing ones.

A mixin of :class:`vramancer_node.daemon.Node`.  ``_init_weights`` builds the store
(configured models are ``runtime.models``, id = directory name, as the pipeline's
registry has them; fetched ones live in ``<state-dir>/models/``); ``_start_weights``
registers the ``weights`` service on the peer listener and hashes the configured
checkpoints in the background so the first peer asking does not wait for it.

:meth:`WeightsWiring.ensure_model_files` is what a stage loader calls before loading
a layer range whose files this node lacks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from protocol.session import SERVICE_WEIGHTS
from protocol.weights import Manifest, file_name_problem
from vramancer_node.logs import get_logger
from vramancer_node.nodeparts import NodeParts
from vramancer_node.weights import (
    Fetcher,
    FetchProgress,
    NoSourceError,
    PeerRefusedError,
    WeightsError,
    WeightsServer,
    WeightsStore,
)
from vramancer_node.weights.fetch import TRANSFER_ERRORS
from vramancer_node.weights.metrics import collect_weights
from vramancer_node.weights.sources import plan_files

log = get_logger("weights")

PROGRESS_LOG_BYTES = 64 << 20
"""Fetch progress is logged about every 64 MiB of a file, and at its end."""


def configured_models(directories: Sequence[str]) -> dict[str, Path]:
    """``runtime.models`` by model id (the directory's name; the first one wins)."""
    models: dict[str, Path] = {}
    for text in directories:
        directory = Path(text).expanduser()
        models.setdefault(directory.name, directory)
    return models


def _log_progress(progress: FetchProgress) -> None:
    logged_step = progress.bytes_done // PROGRESS_LOG_BYTES
    done = progress.bytes_done == progress.bytes_total
    if done or logged_step != (progress.bytes_done - 1) // PROGRESS_LOG_BYTES:
        log.info(
            "fetching weights",
            extra={
                "model": progress.model_id,
                "file": progress.file_name,
                "bytes_done": progress.bytes_done,
                "bytes_total": progress.bytes_total,
                "source": progress.source,
            },
        )


class WeightsWiring(NodeParts):
    """Weight duties of a node (mixed into ``Node``)."""

    weights_store: WeightsStore
    weights_server: WeightsServer
    fetcher: Fetcher
    fetch_jobs: dict[str, dict[str, Any]]
    """Background fetches by model: ``state`` running, done or failed, and ``error``."""
    _weights_nursery: trio.Nursery | None

    def _init_weights(self) -> None:
        """Called from ``Node.__init__``: nothing runs yet."""
        models = configured_models(self.config.runtime.models)
        self.weights_store = WeightsStore(self.state_dir, lambda: models)
        self.weights_server = WeightsServer(self.weights_store)
        self.fetcher = Fetcher(self.peers, _log_progress)
        self.fetch_jobs = {}
        self._weights_nursery = None
        self.metrics.register_collector(
            lambda: collect_weights(self.fetcher, self.weights_server, self.fetch_jobs),
            name="weights",
        )

    def _start_weights(self, nursery: trio.Nursery) -> None:
        """Serve the ``weights`` service (the peer listener runs)."""
        self.peers.register(SERVICE_WEIGHTS, self.weights_server.serve_session)
        self._weights_nursery = nursery
        nursery.start_soon(self._hash_configured_models)

    def start_fetch(self, model_id: str, files: Sequence[str] | None = None) -> dict[str, Any]:
        """Fetch in the background (``ensure_model_files``); the job's state is in
        :attr:`fetch_jobs`.  A fetch of the same model already running is reused."""
        self.weights_store.fetched_directory(model_id)  # ValueError for a bad id, now
        for name in files or ():
            if (problem := file_name_problem(name)) is not None:
                raise ValueError(problem)
        job = self.fetch_jobs.get(model_id)
        if job is not None and job["state"] == "running":
            return job
        if self._weights_nursery is None:
            raise RuntimeError("the node is not running yet")
        job = {"model": model_id, "state": "running", "error": None}
        self.fetch_jobs[model_id] = job

        async def run() -> None:
            try:
                await self.ensure_model_files(model_id, files)
                job["state"] = "done"
            except (WeightsError, OSError, ValueError) as exc:  # never the daemon's end
                job.update(state="failed", error=str(exc))
                log.warning("weights fetch failed", extra={"model": model_id, "detail": str(exc)})

        self._weights_nursery.start_soon(run)
        return job

    async def _hash_configured_models(self) -> None:
        for model_id in self.weights_store.model_ids():
            try:
                manifest = await self.weights_store.manifest(model_id)
            except OSError as exc:
                log.warning("cannot hash a model", extra={"model": model_id, "detail": str(exc)})
                continue
            if manifest is not None:
                log.info(
                    "model manifest ready",
                    extra={
                        "model": model_id,
                        "files": len(manifest.files),
                        "bytes": manifest.total_bytes,
                        "digest": manifest.digest().hex(),
                    },
                )

    async def member_manifests(self, model_id: str) -> dict[str, Manifest]:
        """The manifest of ``model_id`` at every live member that has it, by address."""
        if self.gossip is None:
            return {}
        addresses = [
            member.record.addresses[0]
            for member in self.gossip.core.members()
            if member.record.node_id != self.identity.node_id and member.state.name == "ALIVE"
        ]
        found: dict[str, Manifest] = {}

        async def ask(address: str) -> None:
            try:
                with trio.fail_after(self.config.network.connect_timeout_s * 4):
                    found[address] = await self.fetcher.fetch_manifest(address, model_id)
            except PeerRefusedError:
                pass  # that member does not have it
            except TRANSFER_ERRORS as exc:
                log.warning(
                    "no manifest from member", extra={"peer_address": address, "detail": str(exc)}
                )

        async with trio.open_nursery() as nursery:
            for address in addresses:
                nursery.start_soon(ask, address)
        return {address: found[address] for address in addresses if address in found}

    async def ensure_model_files(self, model_id: str, files: Sequence[str] | None = None) -> Path:
        """The directory of ``model_id`` once ``files`` (default: every file) are in it.

        A model of ``runtime.models`` is the operator's directory, returned as is.
        Otherwise missing files are fetched from members into
        ``<state-dir>/models/<model-id>/`` (verified, resumable; see
        :mod:`vramancer_node.weights.fetch`).  Raises ``NoSourceError`` when no live
        member has a file, ``FetchFailedError`` when every source failed.
        """
        if self.weights_store.is_configured(model_id):
            directory = self.weights_store.directory(model_id)
            assert directory is not None
            return directory
        destination = self.weights_store.fetched_directory(model_id)  # ValueError: bad id
        for name in files or ():
            if (problem := file_name_problem(name)) is not None:
                raise ValueError(problem)
        manifests = await self.member_manifests(model_id)
        if not manifests:
            if files and all((destination / name).is_file() for name in files):
                return destination  # fetched earlier, and nobody to compare with now
            raise NoSourceError(f"no live member has model {model_id!r}")
        plans = plan_files(model_id, manifests, files)
        await trio.to_thread.run_sync(lambda: destination.mkdir(parents=True, exist_ok=True))
        for plan in plans:
            final = destination / plan.entry.name
            if final.exists() and final.stat().st_size == plan.entry.size_bytes:
                continue  # verified when it was installed
            await self.fetcher.fetch_file(model_id, plan.entry, plan.sources, destination)
        return destination

    def weights_status(self) -> dict[str, Any]:
        """Fetch progress and serving counters (part of ``vramancer.weights.v1``)."""
        return {
            "fetches": [
                {
                    "model": p.model_id,
                    "file": p.file_name,
                    "bytes_done": p.bytes_done,
                    "bytes_total": p.bytes_total,
                    "source": p.source,
                }
                for p in self.fetcher.progress.values()
            ],
            "jobs": sorted(self.fetch_jobs.values(), key=lambda job: str(job["model"])),
            "bytes_fetched": self.fetcher.bytes_fetched,
            "corrupt_transfers": self.fetcher.corrupt_transfers,
            "served": dict(sorted(self.weights_server.stats.items())),
        }
