"""An in-memory append-only Merkle tree, for tests, simulations and small logs.

It stores exactly what a persistent store would — the perfect-subtree hashes, one list
per level — and grows them with :func:`~crypto.merkle.compact.append_nodes`, so it
exercises the same code paths as the LMDB audit store.  Memory is ``2 * size`` hashes.
Roots and proofs can be asked for any past size as well as the current one.
"""

from __future__ import annotations

from collections.abc import Iterable

from crypto.merkle.compact import append_nodes, root_hash
from crypto.merkle.errors import MissingNodeError, OutOfRangeError
from crypto.merkle.hashing import leaf_hash
from crypto.merkle.proof import consistency_proof, inclusion_proof

__all__ = ["MemoryTree"]


class MemoryTree:
    """Append-only RFC 6962 tree held in memory; implements ``SubtreeReader``."""

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        """Create a tree holding ``leaves`` (raw leaf data, hashed with the leaf prefix)."""
        self._levels: list[list[bytes]] = []
        self._size = 0
        for data in leaves:
            self.append(data)

    @property
    def size(self) -> int:
        """Number of leaves."""
        return self._size

    def append(self, data: bytes) -> int:
        """Append a leaf holding ``data``; return its index."""
        return self.append_leaf_hash(leaf_hash(data))

    def append_leaf_hash(self, hash_: bytes) -> int:
        """Append a leaf whose RFC 6962 leaf hash is already known; return its index."""
        index = self._size
        for node in append_nodes(index, hash_, self):
            if node.level == len(self._levels):
                self._levels.append([])
            # Nodes complete in order, so each new one lands at the end of its level.
            self._levels[node.level].append(node.hash)
        self._size += 1
        return index

    def subtree_hash(self, level: int, index: int) -> bytes:
        """Return the stored hash of perfect subtree ``(level, index)``."""
        if 0 <= level < len(self._levels) and 0 <= index < len(self._levels[level]):
            return self._levels[level][index]
        raise MissingNodeError(level=level, index=index)

    def leaf_hash(self, index: int) -> bytes:
        """Return the leaf hash of leaf ``index``."""
        if not 0 <= index < self._size:
            raise OutOfRangeError(f"leaf index {index} not in a tree of size {self._size}")
        return self._levels[0][index]

    def root(self, size: int | None = None) -> bytes:
        """Return the root of the tree, or of its first ``size`` leaves."""
        return root_hash(self._check_size(size), self)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Return the inclusion proof of leaf ``index`` in the tree of ``size`` (default:
        the current size)."""
        return inclusion_proof(index, self._check_size(size), self)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """Return the consistency proof from ``size1`` to ``size2`` (default: current)."""
        return consistency_proof(size1, self._check_size(size2), self)

    def _check_size(self, size: int | None) -> int:
        if size is None:
            return self._size
        if not 0 <= size <= self._size:
            raise OutOfRangeError(f"size {size} beyond a tree of {self._size} leaves")
        return size
