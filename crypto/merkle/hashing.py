"""RFC 6962 hashing: the two domain-separated SHA-256 functions a Merkle tree is built of.

RFC 6962 section 2.1 prefixes leaf data with 0x00 and the concatenation of two child
hashes with 0x01, so that no leaf can ever be passed off as an interior node (the
second-preimage attack on plain Merkle trees).  The root of the empty tree is the hash of
the empty string, without prefix.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "EMPTY_ROOT",
    "HASH_BYTES",
    "LEAF_PREFIX",
    "NODE_PREFIX",
    "TREE_SIZE_MAX",
    "leaf_hash",
    "node_hash",
]

HASH_BYTES = 32
"""Length of every hash in the tree: SHA-256."""

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""Root hash of the tree with no leaves (RFC 6962: MTH({}) = SHA-256())."""

TREE_SIZE_MAX = (1 << 64) - 1
"""Largest tree size accepted; the reference implementations count leaves in a uint64."""


def leaf_hash(data: bytes) -> bytes:
    """Return the RFC 6962 hash of one leaf: SHA-256(0x00 || data)."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 6962 hash of an interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()
