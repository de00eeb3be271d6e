"""Exceptions raised by :mod:`vramancer_node.audit`.

::

    AuditStoreError             the audit store cannot do what was asked
    ├── StoreMissingError       there is no audit log in this state directory
    ├── StoreBusyError          a running daemon owns the store (ask it through its API)
    ├── StoreCorruptError       the files are not a well-formed audit store (a database
    │                           or metadata entry is missing or malformed); ``verify``
    │                           reports damage to records instead of raising
    ├── StoreMismatchError      the store belongs to another node or another log origin
    ├── StoreFullError          the map cannot grow past ``map_size_bytes_max``
    └── AuditClosedError        the service is not running (stopped, or failed)

Errors from :mod:`crypto.audit` (a record body that cannot be encoded, a peer's bad
checkpoint) pass through unchanged: they are verdicts on input, not store failures.
LMDB's own errors are translated at the boundary (``raise StoreCorruptError(...) from
exc``) and never leak out of this package.
"""

from __future__ import annotations

__all__ = [
    "AuditClosedError",
    "AuditStoreError",
    "StoreBusyError",
    "StoreCorruptError",
    "StoreFullError",
    "StoreMismatchError",
    "StoreMissingError",
]


class AuditStoreError(Exception):
    """Base class of every error raised by the audit store and service."""


class StoreMissingError(AuditStoreError):
    """No audit log exists in the state directory."""


class StoreBusyError(AuditStoreError):
    """A daemon holds the state directory; a read-only opener must not read under it."""


class StoreCorruptError(AuditStoreError):
    """The audit files are not a well-formed store, or LMDB reported an error."""


class StoreMismatchError(AuditStoreError):
    """The store was created for another node id or origin than the one opening it."""


class StoreFullError(AuditStoreError):
    """The LMDB map reached ``map_size_bytes_max`` and cannot be doubled again."""


class AuditClosedError(AuditStoreError):
    """The audit service is not running, so the request cannot be served."""
