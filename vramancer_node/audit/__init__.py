"""The node's audit log: signed, hash-chained records in LMDB, RFC 6962 Merkle proofs,
C2SP checkpoints cosigned by the other members.

Theory of operation
-------------------
The cryptography is pure and lives in :mod:`crypto.audit` and :mod:`crypto.merkle`;
this package is the I/O shell around it, one concept per module:

* :mod:`~vramancer_node.audit.kinds` — the record kinds and their body fields;
* :mod:`~vramancer_node.audit.layout` — files, databases and key encodings;
* :mod:`~vramancer_node.audit.view` — consistent read-only views of a log;
* :mod:`~vramancer_node.audit.store` — the LMDB store: group commit, map growth;
* :mod:`~vramancer_node.audit.readonly` — opening a stopped node's log read-only;
* :mod:`~vramancer_node.audit.writer` — the dedicated writer thread;
* :mod:`~vramancer_node.audit.service` — the trio service the daemon runs, tuned by
  :mod:`~vramancer_node.audit.settings`;
* :mod:`~vramancer_node.audit.refused` — aggregating refused handshakes;
* :mod:`~vramancer_node.audit.verify` — end-to-end verification naming the first bad
  record;
* :mod:`~vramancer_node.audit.documents` — the JSON documents (API, CLI, export);
* :mod:`~vramancer_node.audit.routes` — the HTTP endpoints;
* :mod:`~vramancer_node.audit.cosign` — checkpoint exchange and cosigning with peers;
* :mod:`~vramancer_node.audit.errors` — the exception tree.

The names below are imported on first use, so that ``vramancer audit`` reading a
stopped node's files does not pay for trio, Starlette and the service.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vramancer_node.audit.cosign import (
        ExchangeResult,
        Witness,
        exchange_checkpoints,
        witness_name,
    )
    from vramancer_node.audit.errors import (
        AuditClosedError,
        AuditStoreError,
        StoreBusyError,
        StoreCorruptError,
        StoreFullError,
        StoreMismatchError,
        StoreMissingError,
    )
    from vramancer_node.audit.readonly import open_readonly
    from vramancer_node.audit.routes import audit_routes
    from vramancer_node.audit.service import AuditService
    from vramancer_node.audit.settings import AuditSettings
    from vramancer_node.audit.store import AuditStore, open_store
    from vramancer_node.audit.verify import VerifyReport, verify_log
    from vramancer_node.audit.view import AuditReader, LogView, StoredCheckpoint

_HOMES = {
    "cosign": ("ExchangeResult", "Witness", "exchange_checkpoints", "witness_name"),
    "errors": (
        "AuditClosedError",
        "AuditStoreError",
        "StoreBusyError",
        "StoreCorruptError",
        "StoreFullError",
        "StoreMismatchError",
        "StoreMissingError",
    ),
    "routes": ("audit_routes",),
    "service": ("AuditService",),
    "settings": ("AuditSettings",),
    "readonly": ("open_readonly",),
    "store": ("AuditStore", "open_store"),
    "verify": ("VerifyReport", "verify_log"),
    "view": ("AuditReader", "LogView", "StoredCheckpoint"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "AuditClosedError",
    "AuditReader",
    "AuditService",
    "AuditSettings",
    "AuditStore",
    "AuditStoreError",
    "ExchangeResult",
    "LogView",
    "StoreBusyError",
    "StoreCorruptError",
    "StoreFullError",
    "StoreMismatchError",
    "StoreMissingError",
    "StoredCheckpoint",
    "VerifyReport",
    "Witness",
    "audit_routes",
    "exchange_checkpoints",
    "open_readonly",
    "open_store",
    "verify_log",
    "witness_name",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
