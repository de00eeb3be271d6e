"""RFC 6962 Merkle trees over SHA-256: roots, inclusion and consistency proofs.

Theory of operation
-------------------
The audit log of every node is an append-only list of records; the Merkle tree over
their hashes lets anyone holding a signed root (a checkpoint) check with ``O(log n)``
hashes that a record is in the log (*inclusion*) and that a later log still contains
every record of an earlier one (*consistency*, i.e. nothing was rewritten).

The package is pure: no I/O, no clock.  It is split by concept:

* :mod:`~crypto.merkle.hashing` — the RFC 6962 leaf and node hash functions;
* :mod:`~crypto.merkle.compact` — perfect subtrees, the only nodes a store keeps:
  the :class:`SubtreeReader` protocol, :func:`append_nodes` (what to persist when a
  leaf is appended) and :func:`root_hash`;
* :mod:`~crypto.merkle.proof` — proof generation from a ``SubtreeReader``;
* :mod:`~crypto.merkle.verify` — proof verification, a port of transparency-dev/merkle's
  reference verifier with its edge cases;
* :mod:`~crypto.merkle.memory` — :class:`MemoryTree`, an in-memory store;
* :mod:`~crypto.merkle.errors` — the exception tree.

Sizes and indexes are leaf counts and leaf positions starting at 0; every hash is
:data:`HASH_BYTES` long.
"""

from __future__ import annotations

from crypto.merkle.compact import (
    SubtreeNode,
    SubtreeReader,
    append_nodes,
    perfect_subtrees,
    range_hash,
    root_hash,
)
from crypto.merkle.errors import (
    InvalidProofError,
    MerkleError,
    MissingNodeError,
    OutOfRangeError,
    ProofError,
    RootMismatchError,
)
from crypto.merkle.hashing import (
    EMPTY_ROOT,
    HASH_BYTES,
    LEAF_PREFIX,
    NODE_PREFIX,
    TREE_SIZE_MAX,
    leaf_hash,
    node_hash,
)
from crypto.merkle.memory import MemoryTree
from crypto.merkle.proof import consistency_proof, inclusion_proof
from crypto.merkle.verify import root_from_inclusion_proof, verify_consistency, verify_inclusion

__all__ = [
    "EMPTY_ROOT",
    "HASH_BYTES",
    "LEAF_PREFIX",
    "NODE_PREFIX",
    "TREE_SIZE_MAX",
    "InvalidProofError",
    "MemoryTree",
    "MerkleError",
    "MissingNodeError",
    "OutOfRangeError",
    "ProofError",
    "RootMismatchError",
    "SubtreeNode",
    "SubtreeReader",
    "append_nodes",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "perfect_subtrees",
    "range_hash",
    "root_from_inclusion_proof",
    "root_hash",
    "verify_consistency",
    "verify_inclusion",
]
