"""Generating RFC 6962 inclusion and consistency proofs from perfect subtrees.

Theory of operation
-------------------
An inclusion proof for leaf ``index`` of a tree of ``size`` leaves lists the siblings of
the nodes on the path from the leaf to the root, bottom up (RFC 6962 section 2.1.1,
"audit path").  The path splits where the binary forms of ``index`` and ``size - 1``
part: below bit ``inner = bit_length(index ^ (size - 1))`` both sides of every
branching exist, so each level contributes one sibling (*inner* part); above it the path
runs along the tree's right edge, and only levels where ``index`` has a 1 bit have a
sibling, always on the left (*border* part).  This is the decomposition used by the
reference verifier (transparency-dev/merkle ``proof/verify.go``), so what we generate
is byte for byte what it expects.

Every sibling is a perfect subtree except possibly the highest inner one when it is a
right sibling: it then reaches past ``size - 1`` and is a ragged node, computed from the
perfect subtrees of its range (:func:`crypto.merkle.compact.range_hash`).  So proofs
need nothing but a :class:`~crypto.merkle.compact.SubtreeReader`, and they can be made
for any past size of a tree, since perfect subtrees never change.

A consistency proof from ``size1`` to ``size2`` (RFC 6962 section 2.1.2) is the
inclusion path, in the tree of ``size2``, of the largest perfect subtree that ends at
``size1``, preceded by that subtree's own hash unless ``size1`` is a power of two (the
verifier already knows it then: it is the old root).
"""

from __future__ import annotations

from crypto.merkle.compact import SubtreeReader, range_hash
from crypto.merkle.errors import OutOfRangeError
from crypto.merkle.hashing import TREE_SIZE_MAX

__all__ = ["consistency_proof", "inclusion_proof"]


def inclusion_proof(index: int, size: int, reader: SubtreeReader) -> list[bytes]:
    """Return the inclusion proof of leaf ``index`` in the tree of the first ``size`` leaves."""
    if not 0 < size <= TREE_SIZE_MAX:
        raise OutOfRangeError(f"tree size {size} out of range")
    if not 0 <= index < size:
        raise OutOfRangeError(f"leaf index {index} not in a tree of size {size}")
    return _path(index, 0, size, reader)


def consistency_proof(size1: int, size2: int, reader: SubtreeReader) -> list[bytes]:
    """Return the proof that the tree of ``size1`` leaves is a prefix of that of ``size2``.

    Equal sizes give an empty proof.  ``size1 == 0`` is refused: every tree extends the
    empty one, so such a proof proves nothing and the verifier rejects it too.
    """
    if not 0 < size1 <= size2 <= TREE_SIZE_MAX:
        raise OutOfRangeError(f"no consistency proof from size {size1} to size {size2}")
    if size1 == size2:
        return []
    # The largest perfect subtree ending at size1 sits at the level of size1's lowest 1 bit.
    level = (size1 & -size1).bit_length() - 1
    index = (size1 - 1) >> level
    proof = _path(size1 - 1, level, size2, reader)
    if index != 0:
        proof.insert(0, reader.subtree_hash(level, index))
    return proof


def _path(leaf: int, level: int, size: int, reader: SubtreeReader) -> list[bytes]:
    """Return the siblings, from ``level`` up to the root of a tree of ``size``, of the
    node at ``level`` that contains ``leaf``.
    """
    inner = (leaf ^ (size - 1)).bit_length()
    proof: list[bytes] = []
    for height in range(level, inner):
        sibling = (leaf >> height) ^ 1
        begin = sibling << height
        end = begin + (1 << height)
        if end <= size:
            proof.append(reader.subtree_hash(height, sibling))
        else:
            # Only the topmost inner sibling, on the right, can be cut by the tree's edge.
            proof.append(range_hash(begin, size, reader))
    for height in range(inner, leaf.bit_length()):
        if (leaf >> height) & 1:
            proof.append(reader.subtree_hash(height, (leaf >> height) - 1))
    return proof
