"""Which bytes are right, and who has them: a plan from the members' manifests.

Theory of operation
-------------------
Members are authenticated, but a disk can rot and a checkpoint can be replaced on one
node and not another.  So for each file wanted, the expected size and SHA-256 are the
ones most members report (ties broken by the smaller hash, so every node decides the
same), and the sources of that file are exactly the members reporting that version,
in the order given.  A member with another version of the file is never used for it.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from protocol.weights import FileEntry, Manifest
from vramancer_node.weights.errors import NoSourceError


@dataclass(frozen=True, kw_only=True)
class FilePlan:
    entry: FileEntry
    """The version to fetch: the majority's size and SHA-256."""
    sources: tuple[str, ...]
    """Addresses of the members holding exactly that version."""


def plan_files(
    model_id: str, manifests: Mapping[str, Manifest], wanted: Sequence[str] | None = None
) -> list[FilePlan]:
    """A plan per file (every file any member lists when ``wanted`` is None)."""
    versions: dict[str, collections.Counter[FileEntry]] = collections.defaultdict(
        collections.Counter
    )
    for manifest in manifests.values():
        for entry in manifest.files:
            versions[entry.name][entry] += 1
    names = sorted(versions) if wanted is None else list(dict.fromkeys(wanted))
    plans = []
    for name in names:
        counts = versions.get(name)
        if not counts:
            raise NoSourceError(f"no live member has {model_id}/{name}")
        entry = min(counts, key=lambda e: (-counts[e], e.sha256, e.size_bytes))
        sources = tuple(address for address, m in manifests.items() if m.file(name) == entry)
        plans.append(FilePlan(entry=entry, sources=sources))
    return plans
