"""Timing and limits of the Raft core, with LAN and WAN presets.

Theory of operation
-------------------
The core counts logical *ticks*; the shell calls ``RaftNode.tick()`` every
:data:`TICK_INTERVAL_S_DEFAULT` seconds (its own clock, never read here).  Every
timeout is a whole number of ticks, so the core stays deterministic under test:

* a follower that hears nothing from a leader for a randomized
  ``[election_ticks, 2 * election_ticks)`` ticks starts an election (Raft §5.2);
* a leader sends heartbeats every ``heartbeat_ticks``, and with ``check_quorum``
  steps down if a quorum of voters was silent for ``election_ticks``;
* a leadership transfer that has not finished after ``election_ticks`` is aborted.

The defaults are etcd's (``HeartbeatTick=1``, ``ElectionTick=10`` at 100 ms per
tick): one lost heartbeat never starts an election, and a crashed leader is replaced
within one to two seconds.  Ranges are checked once, at construction, and a bad value
raises ``ValueError`` naming the field and its allowed range.

Every queue the core keeps has a bound here (TigerBeetle style): entries and bytes per
append, appends in flight per follower, uncommitted bytes at the leader.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

TICK_INTERVAL_S_DEFAULT = 0.1
"""Recommended period of ``RaftNode.tick()`` on a LAN (etcd's 100 ms heartbeat)."""
TICK_INTERVAL_S_WAN = 0.5
"""Recommended tick period with the WAN preset."""
ENTRY_DATA_BYTES_MAX = 4 * 1024 * 1024
"""Largest proposal; bigger state (weights, checkpoints) travels outside the log."""

# field -> (minimum, maximum), inclusive.
CONFIG_RANGES: dict[str, tuple[int, int]] = {
    "election_ticks": (2, 10_000),
    "heartbeat_ticks": (1, 5_000),
    "append_entries_max": (1, 10_000),
    "append_bytes_max": (1024, 64 * 1024 * 1024),
    "inflight_appends_max": (1, 4096),
    "uncommitted_bytes_max": (ENTRY_DATA_BYTES_MAX, 1024 * 1024 * 1024),
    "snapshot_timeout_ticks": (1, 1_000_000),
}


@dataclass(frozen=True, kw_only=True, slots=True)
class RaftConfig:
    """Raft timing, flags and limits.  Defaults: etcd's, for a LAN at 100 ms per tick."""

    election_ticks: int = 10
    """Base election timeout in ticks; the real one is drawn in [n, 2n) (etcd 10)."""
    heartbeat_ticks: int = 1
    """Leader heartbeat period in ticks; must be below ``election_ticks`` (etcd 1)."""
    pre_vote: bool = True
    """Run a PreVote round before a real election, so a node that was partitioned
    cannot inflate the term and depose a healthy leader (Raft thesis §9.6)."""
    check_quorum: bool = True
    """Leader steps down after ``election_ticks`` without hearing a quorum; followers
    that heard a leader within ``election_ticks`` ignore vote requests (leader lease)."""
    append_entries_max: int = 64
    """Entries in one append message."""
    append_bytes_max: int = 1024 * 1024
    """Entry bytes in one append message (at least one entry is always sent)."""
    inflight_appends_max: int = 256
    """Unacknowledged appends per follower while replicating (etcd MaxInflightMsgs)."""
    uncommitted_bytes_max: int = 64 * 1024 * 1024
    """Proposal bytes the leader holds uncommitted before refusing more."""
    snapshot_timeout_ticks: int = 50
    """Ticks the leader waits for a follower to confirm a snapshot before probing it
    again (the snapshot message may have been lost)."""

    def __post_init__(self) -> None:
        for name, (low, high) in CONFIG_RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an int in [{low}, {high}], got {value!r}")
            if not low <= value <= high:
                raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")
        for name in ("pre_vote", "check_quorum"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.heartbeat_ticks >= self.election_ticks:
            raise ValueError(
                f"heartbeat_ticks must be below election_ticks ({self.election_ticks}),"
                f" got {self.heartbeat_ticks}"
            )

    @classmethod
    def lan(cls) -> RaftConfig:
        """etcd's defaults; tick every :data:`TICK_INTERVAL_S_DEFAULT` (100 ms)."""
        return cls()

    @classmethod
    def wan(cls) -> RaftConfig:
        """Patience for high-RTT links; tick every :data:`TICK_INTERVAL_S_WAN`."""
        return dataclasses.replace(
            cls.lan(),
            election_ticks=10,  # 5 s at 500 ms per tick: etcd's advice of 10x the RTT
            heartbeat_ticks=1,  # 500 ms
            snapshot_timeout_ticks=120,  # a minute for a snapshot over a slow link
        )
