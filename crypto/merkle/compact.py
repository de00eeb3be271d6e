"""Perfect subtrees: what a store keeps, how an append grows them, how roots fold out.

Theory of operation
-------------------
Number the nodes of an append-only RFC 6962 tree by ``(level, index)``: level 0 holds
the leaf hashes, and node ``(level, index)`` is the root of the *perfect* subtree over
leaves ``[index * 2**level, (index + 1) * 2**level)``.  Once all of its leaves exist such
a node never changes again, whatever is appended later, so it is the natural unit of
storage: write it once, key it by ``(level, index)``, never rewrite it.

Nodes on the ragged right edge of a tree whose size is not a power of two are *not*
perfect and are never stored.  They are recomputed on demand from the perfect subtrees
below them: the leaves ``[begin, end)`` of such a node split into a short list of
maximal perfect subtrees (a *compact range*, as Trillian calls it, one per set bit of
``end - begin``), and RFC 6962's rule "the left child is the largest power of two
smaller than the node" means the node's hash is those subtree hashes folded together
from the right.  A tree of size ``n`` therefore costs ``O(log n)`` reads for its root.

Appending leaf number ``size`` creates the leaf node and then, for as long as the new
node is a right child, its parent: ``append_nodes`` returns exactly those nodes, reading
only their left siblings, which a store holds already.

Everything here talks to storage through :class:`SubtreeReader`, so the same code
serves :class:`~crypto.merkle.memory.MemoryTree` and the LMDB audit store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from crypto.merkle.errors import OutOfRangeError
from crypto.merkle.hashing import EMPTY_ROOT, HASH_BYTES, TREE_SIZE_MAX, node_hash

__all__ = [
    "SubtreeNode",
    "SubtreeReader",
    "append_nodes",
    "perfect_subtrees",
    "range_hash",
    "root_hash",
]


class SubtreeReader(Protocol):
    """Read access to the stored perfect-subtree hashes of one tree."""

    def subtree_hash(self, level: int, index: int) -> bytes:
        """Return the hash of the perfect subtree over leaves
        ``[index * 2**level, (index + 1) * 2**level)``.

        Only ever called for subtrees whose leaves all exist.  Raise
        :class:`~crypto.merkle.errors.MissingNodeError` if the node is not stored.
        """
        ...


@dataclass(frozen=True, slots=True)
class SubtreeNode:
    """One perfect-subtree node, as :func:`append_nodes` hands it over for storage."""

    level: int
    """Height above the leaves (0 = the leaf hash itself)."""
    index: int
    """Position among the nodes of the same level, counted from 0 on the left."""
    hash: bytes
    """The node's 32-byte hash."""


def append_nodes(size: int, leaf_hash: bytes, reader: SubtreeReader) -> list[SubtreeNode]:
    """Return the perfect-subtree nodes created by appending a leaf to a tree of ``size``.

    The first node is the leaf itself at ``(0, size)``; each following one is the
    parent of the previous, for as long as the previous is a right child.  ``reader``
    must hold the tree of ``size`` leaves; it is asked only for left siblings.
    """
    if not 0 <= size < TREE_SIZE_MAX:
        raise OutOfRangeError(f"cannot append to a tree of size {size}")
    if len(leaf_hash) != HASH_BYTES:
        raise ValueError(f"leaf hash must be {HASH_BYTES} bytes, got {len(leaf_hash)}")
    level, index, current = 0, size, leaf_hash
    nodes = [SubtreeNode(level, index, current)]
    # An odd index means a right child: its left sibling is complete, so the parent is.
    while index & 1:
        current = node_hash(reader.subtree_hash(level, index - 1), current)
        level, index = level + 1, index >> 1
        nodes.append(SubtreeNode(level, index, current))
    return nodes


def perfect_subtrees(begin: int, end: int) -> list[tuple[int, int]]:
    """Split leaves ``[begin, end)`` into maximal perfect subtrees, left to right.

    Returns ``(level, index)`` pairs; each subtree is as large as the alignment of its
    first leaf and the remaining width allow.
    """
    if not 0 <= begin <= end:
        raise OutOfRangeError(f"invalid leaf range [{begin}, {end})")
    nodes: list[tuple[int, int]] = []
    while begin < end:
        width_level = (end - begin).bit_length() - 1
        # begin & -begin isolates the lowest set bit: the largest aligned block size.
        align_level = (begin & -begin).bit_length() - 1 if begin else width_level
        level = min(width_level, align_level)
        nodes.append((level, begin >> level))
        begin += 1 << level
    return nodes


def range_hash(begin: int, end: int, reader: SubtreeReader) -> bytes:
    """Return the RFC 6962 hash of the (possibly ragged) subtree over ``[begin, end)``.

    ``begin`` must be aligned to a power of two at least ``end - begin``, as it is for a
    whole tree (``begin == 0``) and for every ragged node of a tree's right edge; only
    then is the RFC 6962 split the same as the compact-range split folded from the right.
    """
    if begin >= end:
        raise OutOfRangeError(f"empty leaf range [{begin}, {end})")
    span = 1 << (end - begin - 1).bit_length()
    if begin % span:
        raise OutOfRangeError(f"[{begin}, {end}) is not a subtree of an RFC 6962 tree")
    nodes = perfect_subtrees(begin, end)
    level, index = nodes[-1]
    current = reader.subtree_hash(level, index)
    for level, index in reversed(nodes[:-1]):
        current = node_hash(reader.subtree_hash(level, index), current)
    return current


def root_hash(size: int, reader: SubtreeReader) -> bytes:
    """Return the root hash of the tree made of the first ``size`` leaves."""
    if not 0 <= size <= TREE_SIZE_MAX:
        raise OutOfRangeError(f"tree size {size} out of range")
    if size == 0:
        return EMPTY_ROOT
    return range_hash(0, size, reader)
