"""Exceptions raised by :mod:`crypto.merkle`.

The tree says whose fault a failure is::

    MerkleError
    ├── ProofError            a proof handed to us (usually by a peer) is not accepted
    │   ├── InvalidProofError the proof or its parameters are malformed: a hash that is
    │   │                     not 32 bytes, the wrong number of hashes, an index beyond
    │   │                     the tree, sizes in the wrong order, a consistency proof
    │   │                     from the empty tree
    │   └── RootMismatchError the proof is well formed but leads to another root
    ├── OutOfRangeError       we asked the tree for something it cannot have (a leaf
    │                         index >= size, size1 > size2, a tree larger than the store)
    └── MissingNodeError      a subtree reader does not hold a node it should hold; the
                              store is corrupt or behind

``ProofError`` is remote input (refuse it, keep running); the other two are local bugs
or a damaged store.
"""

from __future__ import annotations

__all__ = [
    "InvalidProofError",
    "MerkleError",
    "MissingNodeError",
    "OutOfRangeError",
    "ProofError",
    "RootMismatchError",
]


class MerkleError(Exception):
    """Base class of every error raised by :mod:`crypto.merkle`."""


class ProofError(MerkleError):
    """A Merkle proof does not verify; raised by the ``verify_*`` functions."""


class InvalidProofError(ProofError, ValueError):
    """The proof or its parameters are malformed (sizes, lengths, index range)."""


class RootMismatchError(ProofError):
    """A well-formed proof leads to a root other than the expected one.

    Attributes:
        expected: the root the caller trusts.
        calculated: the root the proof leads to.
    """

    def __init__(self, *, expected: bytes, calculated: bytes) -> None:
        super().__init__(
            f"calculated root {calculated.hex()} does not match expected root {expected.hex()}"
        )
        self.expected = expected
        self.calculated = calculated


class OutOfRangeError(MerkleError, ValueError):
    """A proof or root was requested for positions the tree does not have."""


class MissingNodeError(MerkleError, LookupError):
    """A :class:`~crypto.merkle.compact.SubtreeReader` lacks a perfect subtree node.

    Attributes:
        level: height of the missing node (0 = leaf).
        index: position of the node among the nodes of its level.
    """

    def __init__(self, *, level: int, index: int) -> None:
        super().__init__(f"no subtree hash stored at level {level}, index {index}")
        self.level = level
        self.index = index
