"""The checkpoints this node can serve: ``runtime.models``, each a directory.

A model's id is its directory's name (``/srv/models/Llama-3.2-1B`` serves as
``Llama-3.2-1B``).  Every node that hosts a stage of a model needs the checkpoint
under the same id for now (weight fetching from peers comes later).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from vramancer_node.pipeline.errors import UnknownModelError
from vramancer_node.runtime import ModelConfig, read_model_config


@dataclass(frozen=True, kw_only=True)
class ModelEntry:
    model_id: str
    directory: Path


class ModelRegistry:
    """Model ids to checkpoint directories; configs are read on first use and kept."""

    def __init__(self, directories: tuple[str, ...]) -> None:
        self._entries: dict[str, ModelEntry] = {}
        for text in directories:
            directory = Path(text).expanduser()
            self._entries.setdefault(
                directory.name, ModelEntry(model_id=directory.name, directory=directory)
            )
        self._configs: dict[str, ModelConfig] = {}
        self._configured = frozenset(self._entries)

    def add(self, model_id: str, directory: Path) -> None:
        """Serve ``model_id`` from ``directory`` too (a checkpoint fetched from members)."""
        self._entries.setdefault(model_id, ModelEntry(model_id=model_id, directory=directory))

    def configured(self, model_id: str) -> bool:
        """Whether ``model_id`` is one of ``runtime.models`` (not fetched)."""
        return model_id in self._configured

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._entries

    def ids(self) -> list[str]:
        return sorted(self._entries)

    def entry(self, model_id: str) -> ModelEntry:
        try:
            return self._entries[model_id]
        except KeyError:
            known = ", ".join(self.ids()) or "none (start the node with --model-dir DIR)"
            raise UnknownModelError(
                f"model {model_id!r} is not served by this node; models: {known}"
            ) from None

    def config(self, model_id: str) -> ModelConfig:
        """The model's architecture (CheckpointError if its config.json is unusable)."""
        if model_id not in self._configs:
            self._configs[model_id] = read_model_config(self.entry(model_id).directory)
        return self._configs[model_id]


def resolve_device(name: str) -> torch.device:
    """``auto``: the first CUDA device, else MPS, else the CPU; otherwise as named."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", 0)
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
