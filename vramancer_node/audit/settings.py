"""Tunables of the audit service: one frozen dataclass, defaults as named constants.

Every field carries its unit in its name; :class:`AuditSettings` validates all of them
once, on construction, naming the allowed range.
"""

from __future__ import annotations

from dataclasses import dataclass

from vramancer_node.audit.store import (
    MAP_SIZE_BYTES_INITIAL,
    MAP_SIZE_BYTES_MAX,
    MAP_SIZE_BYTES_MIN,
)

__all__ = [
    "BATCH_RECORDS_MAX",
    "CHECKPOINT_EVERY_RECORDS",
    "CHECKPOINT_INTERVAL_S",
    "QUEUE_RECORDS_MAX",
    "REFUSED_INTERVAL_S",
    "AuditSettings",
]

CHECKPOINT_EVERY_RECORDS = 256
"""Records after which a checkpoint is signed without waiting for the interval."""
CHECKPOINT_INTERVAL_S = 60.0
"""Longest time a record waits to be covered by a checkpoint."""
REFUSED_INTERVAL_S = 60.0
"""Interval over which refused handshakes are aggregated into records."""
BATCH_RECORDS_MAX = 512
"""Most records committed in one transaction (bounds a transaction's size and time)."""
QUEUE_RECORDS_MAX = 4096
"""Appends queued behind the batch in flight before appenders wait."""


@dataclass(frozen=True, kw_only=True)
class AuditSettings:
    """Tunables of the audit service; the defaults are the named constants above."""

    checkpoint_every_records: int = CHECKPOINT_EVERY_RECORDS
    checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S
    refused_interval_s: float = REFUSED_INTERVAL_S
    batch_records_max: int = BATCH_RECORDS_MAX
    queue_records_max: int = QUEUE_RECORDS_MAX
    map_size_bytes_initial: int = MAP_SIZE_BYTES_INITIAL
    """LMDB map of a new store, bytes; doubled whenever it fills."""
    map_size_bytes_max: int = MAP_SIZE_BYTES_MAX

    def __post_init__(self) -> None:
        for name in ("checkpoint_every_records", "batch_records_max", "queue_records_max"):
            value = getattr(self, name)
            if not 1 <= value <= 1_000_000:
                raise ValueError(f"{name} must be in [1, 1000000], got {value}")
        for name in ("checkpoint_interval_s", "refused_interval_s"):
            value = getattr(self, name)
            if not 0.01 <= value <= 86_400:
                raise ValueError(f"{name} must be in [0.01, 86400] s, got {value}")
        if not MAP_SIZE_BYTES_MIN <= self.map_size_bytes_initial <= self.map_size_bytes_max:
            raise ValueError(
                f"map sizes must satisfy {MAP_SIZE_BYTES_MIN} <= map_size_bytes_initial "
                f"<= map_size_bytes_max, got {self.map_size_bytes_initial} and "
                f"{self.map_size_bytes_max}"
            )
