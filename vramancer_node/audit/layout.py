"""The on-disk layout of a node's audit log: where it lives, its databases, its keys.

Theory of operation
-------------------
The log lives in ``<state-dir>/audit/``, one LMDB environment (``data.mdb``,
``lock.mdb``) with four named databases::

    records      seq (8-byte big-endian)           -> signed record, versioned wire form
    tree         node position (8-byte big-endian) -> 32-byte perfect-subtree hash
    checkpoints  tree size (8-byte big-endian)     -> signed checkpoint note, UTF-8, with
                                                      any cosignature lines appended
    meta         ASCII name                        -> value (see the ``META_*`` names)

Big-endian keys sort as their integers, so every new key of the first three databases is
the largest so far and is written with ``append=True`` (LMDB's ``MDB_APPEND``: no
B-tree search, pages filled to the brim).  A put that would not append is refused by
LMDB, which the store treats as corruption rather than ever overwriting a record.

The tree keeps only the perfect-subtree nodes of :mod:`crypto.merkle.compact`, keyed by
their *position in creation order*: appending leaf ``m`` creates ``(0, m)`` and then one
parent per trailing 1 bit of ``m``, and before that the ``m`` earlier appends created
``2m - popcount(m)`` nodes.  So node ``(level, index)``, created by the append of leaf
``m = (index + 1) * 2**level - 1``, sits at position ``2m - popcount(m) + level``, and
positions only grow, which is what ``append=True`` needs.  A tree of ``n`` leaves holds
exactly ``2n - popcount(n)`` nodes (:func:`tree_nodes_for_size`).

Checkpoints are keyed by the tree size they sign, so sizes strictly increase and the
latest checkpoint is the last key.  The only write that replaces a value is adding a
cosignature line to a stored checkpoint note.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "AUDIT_DIR_NAME",
    "DB_CHECKPOINTS",
    "DB_META",
    "DB_NAMES",
    "DB_RECORDS",
    "DB_TREE",
    "FORMAT_VERSION",
    "KEY_BYTES",
    "KEY_MAX",
    "META_COSIGNED_PREFIX",
    "META_FORMAT",
    "META_NODE_ID",
    "META_ORIGIN",
    "META_PUBLIC_KEY",
    "META_WITNESS_PREFIX",
    "WITNESS_STATE_FILE_NAME",
    "audit_dir",
    "decode_key",
    "encode_key",
    "record_of_node",
    "tree_nodes_for_size",
    "tree_position",
]

AUDIT_DIR_NAME = "audit"
"""Directory of the LMDB environment, inside the node's state directory."""

WITNESS_STATE_FILE_NAME = "witness.json"
"""This node's cosigner state (the last head it cosigned for each peer's log), written
with :func:`vramancer_node.atomic.atomic_write`; it sits beside the LMDB files."""

FORMAT_VERSION = 1
"""Layout version, stored in ``meta``.  Append only: a new layout gets a new number."""

DB_RECORDS = b"records"
DB_TREE = b"tree"
DB_CHECKPOINTS = b"checkpoints"
DB_META = b"meta"
DB_NAMES = (DB_RECORDS, DB_TREE, DB_CHECKPOINTS, DB_META)

META_FORMAT = b"format"
"""ASCII decimal :data:`FORMAT_VERSION`."""
META_NODE_ID = b"node_id"
"""ASCII node id of the log's node."""
META_PUBLIC_KEY = b"public_key"
"""The node's raw 32-byte Ed25519 public key, which signs records and checkpoints."""
META_ORIGIN = b"origin"
"""ASCII C2SP origin of the log, ``vramancer/<cluster id>/<node id>``."""
META_WITNESS_PREFIX = b"witness/"
"""``witness/<cosigner name>`` -> the cosigner's verifier key string (C2SP vkey)."""
META_COSIGNED_PREFIX = b"cosigned/"
"""``cosigned/<cosigner name>`` -> 8-byte big-endian size it last cosigned for us."""

KEY_BYTES = 8
KEY_MAX = (1 << (8 * KEY_BYTES)) - 1


def audit_dir(state_dir: Path) -> Path:
    """Return the directory of the audit environment of ``state_dir``."""
    return Path(state_dir) / AUDIT_DIR_NAME


def encode_key(value: int) -> bytes:
    """Return the 8-byte big-endian key of ``value``."""
    if not 0 <= value <= KEY_MAX:
        raise ValueError(f"key {value} outside [0, {KEY_MAX}]")
    return value.to_bytes(KEY_BYTES, "big")


def decode_key(key: bytes) -> int:
    """Return the integer of an 8-byte big-endian key; ``ValueError`` if malformed."""
    if len(key) != KEY_BYTES:
        raise ValueError(f"key {key.hex()} is {len(key)} bytes, expected {KEY_BYTES}")
    return int.from_bytes(key, "big")


def tree_nodes_for_size(size: int) -> int:
    """Return how many perfect-subtree nodes a tree of ``size`` leaves stores."""
    return 2 * size - size.bit_count()


def tree_position(level: int, index: int) -> int:
    """Return the creation-order position (the ``tree`` key) of node ``(level, index)``."""
    leaf = record_of_node(level, index)
    return tree_nodes_for_size(leaf) + level


def record_of_node(level: int, index: int) -> int:
    """Return the seq of the record whose append created node ``(level, index)``."""
    if level < 0 or index < 0:
        raise ValueError(f"no tree node at level {level}, index {index}")
    return ((index + 1) << level) - 1
