"""Timing of the failure detector and of dissemination, with memberlist's presets.

Theory of operation
-------------------
Every time-related number the membership core uses lives in one frozen
:class:`MembershipTiming`.  The field names and defaults are those of
``vramancer_node.config.MembershipSection``; the shell copies the values over, the
core never reads configuration itself.  The three presets mirror
hashicorp/memberlist's ``DefaultLANConfig``, ``DefaultWANConfig`` and
``DefaultLocalConfig`` (config.go); WAN and LOCAL are derived from LAN the way
memberlist derives them, so a number changed in LAN moves the others too.

Ranges are checked once, at construction: a bad value raises ``ValueError`` naming
the field and its allowed range.  The scaling formulas that depend on the cluster
size live next to the concept they drive (``suspicion.py``, ``broadcast.py``);
the push-pull scaling lives here because it only stretches an interval.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

PUSH_PULL_SCALE_THRESHOLD_MEMBERS = 32
"""Clusters above this size stretch the push-pull interval (memberlist util.go)."""

# field -> (minimum, maximum), inclusive.  Same ranges as the node configuration.
TIMING_RANGES: dict[str, tuple[float, float]] = {
    "probe_interval_s": (0.01, 60.0),
    "probe_timeout_s": (0.005, 30.0),
    "indirect_checks": (0, 16),
    "suspicion_mult": (1, 100),
    "suspicion_max_timeout_mult": (1, 100),
    "retransmit_mult": (1, 100),
    "gossip_interval_s": (0.01, 60.0),
    "gossip_nodes": (1, 64),
    "gossip_to_the_dead_s": (0.0, 3600.0),
    "push_pull_interval_s": (1.0, 3600.0),
    "awareness_max_multiplier": (1, 64),
    "tcp_timeout_s": (0.1, 300.0),
}
_INTEGER_FIELDS = frozenset(
    {
        "indirect_checks",
        "suspicion_mult",
        "suspicion_max_timeout_mult",
        "retransmit_mult",
        "gossip_nodes",
        "awareness_max_multiplier",
    }
)


@dataclass(frozen=True, kw_only=True, slots=True)
class MembershipTiming:
    """SWIM/Lifeguard timing.  Defaults are memberlist's ``DefaultLANConfig``."""

    probe_interval_s: float = 1.0
    """Time between probes of one member (memberlist ProbeInterval, LAN 1 s)."""
    probe_timeout_s: float = 0.5
    """Wait for a direct ack before probing indirectly (ProbeTimeout, LAN 500 ms)."""
    indirect_checks: int = 3
    """Members asked to probe a target indirectly (IndirectChecks, LAN 3)."""
    suspicion_mult: int = 4
    """Suspicion timeout = suspicion_mult * log10(n) * probe_interval_s (LAN 4)."""
    suspicion_max_timeout_mult: int = 6
    """Lifeguard: upper bound of the suspicion timeout, multiple of its minimum (LAN 6)."""
    retransmit_mult: int = 4
    """Transmits per broadcast = retransmit_mult * ceil(log10(n + 1)) (LAN 4)."""
    gossip_interval_s: float = 0.2
    """Time between gossip rounds (GossipInterval, LAN 200 ms)."""
    gossip_nodes: int = 3
    """Members gossiped to per round (GossipNodes, LAN 3)."""
    gossip_to_the_dead_s: float = 30.0
    """Dead members keep receiving gossip this long, to let them refute (LAN 30 s)."""
    push_pull_interval_s: float = 30.0
    """Time between full-state exchanges with one member (PushPullInterval, LAN 30 s)."""
    awareness_max_multiplier: int = 8
    """Lifeguard: the health multiplier stretches probes up to this factor (LAN 8)."""
    tcp_timeout_s: float = 10.0
    """Timeout of one push-pull exchange; enforced by the shell (TCPTimeout, LAN 10 s)."""

    def __post_init__(self) -> None:
        for name, (low, high) in TIMING_RANGES.items():
            value = getattr(self, name)
            if name in _INTEGER_FIELDS:
                valid_type = isinstance(value, int) and not isinstance(value, bool)
            else:
                valid_type = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not valid_type:
                raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")
            if not (math.isfinite(value) and low <= value <= high):
                raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")
        if self.probe_timeout_s >= self.probe_interval_s:
            raise ValueError(
                f"probe_timeout_s must be below probe_interval_s ({self.probe_interval_s}),"
                f" got {self.probe_timeout_s}"
            )

    @classmethod
    def lan(cls) -> MembershipTiming:
        """memberlist ``DefaultLANConfig``: a LAN, RTT well under 500 ms."""
        return cls()

    @classmethod
    def wan(cls) -> MembershipTiming:
        """memberlist ``DefaultWANConfig``: slower probes, more patience."""
        return dataclasses.replace(
            cls.lan(),
            tcp_timeout_s=30.0,  # TCPTimeout 30 s
            suspicion_mult=6,  # SuspicionMult 6: more lossy links before suspecting
            push_pull_interval_s=60.0,  # PushPullInterval 60 s
            probe_timeout_s=3.0,  # ProbeTimeout 3 s: intercontinental RTTs
            probe_interval_s=5.0,  # ProbeInterval 5 s
            gossip_nodes=4,  # GossipNodes 4: fan out more, gossip less often
            gossip_interval_s=0.5,  # GossipInterval 500 ms
            gossip_to_the_dead_s=60.0,  # GossipToTheDeadTime 60 s
        )

    @classmethod
    def local(cls) -> MembershipTiming:
        """memberlist ``DefaultLocalConfig``: loopback, fast and reliable."""
        return dataclasses.replace(
            cls.lan(),
            tcp_timeout_s=1.0,  # TCPTimeout 1 s
            indirect_checks=1,  # IndirectChecks 1: little to gain on loopback
            retransmit_mult=2,  # RetransmitMult 2: nothing gets lost
            suspicion_mult=3,  # SuspicionMult 3
            push_pull_interval_s=15.0,  # PushPullInterval 15 s
            probe_timeout_s=0.2,  # ProbeTimeout 200 ms
            probe_interval_s=1.0,  # ProbeInterval 1 s
            gossip_interval_s=0.1,  # GossipInterval 100 ms
            gossip_to_the_dead_s=15.0,  # GossipToTheDeadTime 15 s
        )


def push_pull_interval_scaled_s(interval_s: float, members: int) -> float:
    """The push-pull interval stretched for large clusters (memberlist pushPullScale).

    Up to :data:`PUSH_PULL_SCALE_THRESHOLD_MEMBERS` members the interval is unchanged;
    each doubling beyond it adds one more interval, so the full-state traffic per node
    grows with log2(n) instead of n.
    """
    if members <= PUSH_PULL_SCALE_THRESHOLD_MEMBERS:
        return interval_s
    multiplier = math.ceil(math.log2(members) - math.log2(PUSH_PULL_SCALE_THRESHOLD_MEMBERS)) + 1
    return multiplier * interval_s
