"""Lifeguard's local health multiplier (memberlist awareness.go).

Theory of operation
-------------------
A node that is itself slow (overloaded CPU, saturated link) misses acks and wrongly
suspects healthy peers.  Lifeguard lets the node notice that from evidence about
*itself* and stretch its own probe timing while it is unwell:

=============================================  =======
evidence                                       delta
=============================================  =======
a probe succeeded                              -1
a probe failed, each expected nack missing     +1 each
a probe failed and no nacks were expected      +1
we had to refute a suspicion about ourselves   +1
=============================================  =======

The score stays in ``[0, awareness_max_multiplier - 1]``; probe interval and probe
timeout are multiplied by ``score + 1``.
"""

from __future__ import annotations

PROBE_SUCCEEDED_DELTA = -1
PROBE_FAILED_DELTA = 1
"""Per missed nack, or once when no nacks were expected."""
REFUTED_DELTA = 1


class Awareness:
    """The health score of the local node: 0 is healthy."""

    __slots__ = ("_max_multiplier", "_score")

    def __init__(self, max_multiplier: int) -> None:
        if max_multiplier < 1:
            raise ValueError(f"max_multiplier must be at least 1, got {max_multiplier}")
        self._max_multiplier = max_multiplier
        self._score = 0

    @property
    def score(self) -> int:
        """Current score, ``0 .. max_multiplier - 1``."""
        return self._score

    def apply_delta(self, delta: int) -> None:
        """Add ``delta`` to the score, clamped to its range."""
        self._score = min(max(self._score + delta, 0), self._max_multiplier - 1)

    def scale_s(self, duration_s: float) -> float:
        """``duration_s`` stretched by the health multiplier (``score + 1``)."""
        return duration_s * (self._score + 1)
