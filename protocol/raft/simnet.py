"""The fake network of the Raft simulation: loss, duplication, delay and partitions.

Theory of operation
-------------------
Like memberlist's ``mock_transport.go``, the network is a first-class part of the
test kit.  Messages travel as encoded bytes (so every simulated message also crosses
the codec).  Each one sent while faults are on is lost with probability ``drop``,
delivered twice with probability ``duplicate``, and delayed by a whole number of
ticks in ``[0, delay_ticks_max]``; messages due in the same tick are delivered in a
random order, so delays and shuffling together reorder the stream.  A partition is
a map from node to group: a message is delivered only if, at delivery time, sender
and receiver are in the same group (nodes in no group form group 0).

All randomness comes from the simulation's one ``random.Random``.
"""

from __future__ import annotations

from dataclasses import dataclass
from random import Random


@dataclass(frozen=True, slots=True)
class _InFlight:
    at_tick: int
    data: bytes


class SimNetwork:
    """Seeded lossy, duplicating, reordering network with partitions, in ticks."""

    def __init__(self, rng: Random, *, drop: float, duplicate: float, delay_ticks_max: int) -> None:
        self._rng = rng
        self.drop = drop
        self.duplicate = duplicate
        self.delay_ticks_max = delay_ticks_max
        self.faults_on = True
        """False: every message arrives once, at the next delivery round."""
        self.groups: dict[str, int] = {}
        """node -> partition group; empty when the network is whole."""
        self._in_flight: list[_InFlight] = []

    def send(self, data: bytes, now_tick: int) -> None:
        """Put one encoded message on the wire at ``now_tick``."""
        copies = 1
        if self.faults_on:
            if self._rng.random() < self.drop:
                return
            if self._rng.random() < self.duplicate:
                copies = 2
        for _ in range(copies):
            delay = self._rng.randint(0, self.delay_ticks_max) if self.faults_on else 0
            self._in_flight.append(_InFlight(now_tick + delay, data))

    def due(self, now_tick: int) -> list[bytes]:
        """Messages arriving by ``now_tick``, in random order (reachability is checked
        by the caller with :meth:`reachable`, after decoding)."""
        due = [m for m in self._in_flight if m.at_tick <= now_tick]
        if not due:
            return []
        self._in_flight = [m for m in self._in_flight if m.at_tick > now_tick]
        self._rng.shuffle(due)
        return [m.data for m in due]

    def reachable(self, source: str, destination: str) -> bool:
        return self.groups.get(source, 0) == self.groups.get(destination, 0)

    def heal(self) -> None:
        self.groups = {}
