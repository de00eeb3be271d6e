"""Weight distribution: a node fetches the checkpoint files it lacks from members.

Theory of operation
-------------------
Every node can serve the checkpoints it holds (``runtime.models`` and what it fetched
earlier) over the ``weights`` service of its peer listener; a node missing files asks
members for their manifests, chooses for each file the size and SHA-256 most of them
report, and downloads it from one that has it — resumable, verified before use,
retried elsewhere.  Wire format: :mod:`protocol.weights`; byte layout and rules:
``docs/weights.md``.

================  ===============================================================
``manifest``      name, size and SHA-256 of each file, computed once and cached
``store``         configured and fetched checkpoint directories, their manifests
``server``        :class:`WeightsServer`: the ``weights`` session handler
``fetch``         :class:`Fetcher`: ranged, resumable, verified downloads
``errors``        :class:`WeightsError` and its subclasses
================  ===============================================================

The node's side is :mod:`vramancer_node.weightswiring` (``ensure_model_files``).
"""

from vramancer_node.weights.errors import (
    CorruptTransferError,
    FetchFailedError,
    NoSourceError,
    PeerRefusedError,
    WeightsError,
)
from vramancer_node.weights.fetch import Fetcher, FetchProgress
from vramancer_node.weights.server import WeightsServer
from vramancer_node.weights.store import WeightsStore

__all__ = [
    "CorruptTransferError",
    "FetchFailedError",
    "FetchProgress",
    "Fetcher",
    "NoSourceError",
    "PeerRefusedError",
    "WeightsError",
    "WeightsServer",
    "WeightsStore",
]
