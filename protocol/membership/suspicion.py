"""Lifeguard's dynamic suspicion timeout (memberlist suspicion.go).

Theory of operation
-------------------
When a member is first suspected, its timer is set to the *maximum* timeout.  Every
independent confirmation (a SUSPECT from another accuser) shrinks it
logarithmically, down to the *minimum* once ``k`` confirmations arrived::

    timeout(n) = max(min_s, max_s - log(n + 1) / log(k + 1) * (max_s - min_s))

measured from the start of the suspicion (so confirmations never extend it), and
truncated to whole milliseconds like memberlist.  If no confirmations are expected
(``k < 1``) the timer starts at the minimum.  The bounds scale with the cluster size::

    min_s = suspicion_mult * max(1, log10(max(1, n_members))) * probe_interval_s
    max_s = suspicion_max_timeout_mult * min_s

and ``k = suspicion_mult - 2``, or 0 when the cluster is too small to deliver that
many independent accusers (fewer than ``k`` members besides us and the suspect).

Time enters as ``now`` (seconds); :attr:`Suspicion.deadline_s` is when the member
should be declared dead.  The core checks deadlines on ``tick``.
"""

from __future__ import annotations

import math

SUSPICION_CONFIRMATIONS_OFFSET = 2
"""k = suspicion_mult - 2: hit the nominal timeout two probe intervals early (state.go)."""
MILLISECONDS_PER_SECOND = 1000.0


def suspicion_timeout_s(suspicion_mult: int, members: int, probe_interval_s: float) -> float:
    """Minimum suspicion timeout for a cluster of ``members`` (memberlist util.go).

    The node-scale factor is truncated to milliseconds as memberlist does, so the
    numbers match its tables exactly.
    """
    node_scale = max(1.0, math.log10(max(1.0, float(members))))
    node_scale_ms = math.floor(node_scale * MILLISECONDS_PER_SECOND)
    return suspicion_mult * node_scale_ms * probe_interval_s / MILLISECONDS_PER_SECOND


def expected_confirmations(suspicion_mult: int, members: int) -> int:
    """``k``: independent confirmations that shrink the timer all the way to its minimum."""
    k = suspicion_mult - SUSPICION_CONFIRMATIONS_OFFSET
    # Subtract ourselves and the suspect: the rest are the only possible accusers.
    if members - 2 < k:
        return 0
    return max(0, k)


def suspicion_total_timeout_s(confirmations: int, k: int, min_s: float, max_s: float) -> float:
    """Total timeout, from the start of the suspicion, after ``confirmations``."""
    if k < 1:
        return min_s
    fraction = math.log(confirmations + 1.0) / math.log(k + 1.0)
    raw_s = max_s - fraction * (max_s - min_s)
    timeout_s = math.floor(MILLISECONDS_PER_SECOND * raw_s) / MILLISECONDS_PER_SECOND
    return max(timeout_s, min_s)


def remaining_suspicion_time_s(
    confirmations: int, k: int, elapsed_s: float, min_s: float, max_s: float
) -> float:
    """Time left after ``elapsed_s``; negative when overdue (memberlist, verbatim maths)."""
    return suspicion_total_timeout_s(confirmations, k, min_s, max_s) - elapsed_s


class Suspicion:
    """The timer of one suspected member, with its independent confirmations."""

    __slots__ = ("_accusers", "confirmations", "deadline_s", "k", "max_s", "min_s", "start_s")

    def __init__(self, *, from_id: str, k: int, min_s: float, max_s: float, now: float) -> None:
        self.k = k
        self.min_s = min_s
        self.max_s = max_s
        self.start_s = now
        self.confirmations = 0
        # The first accuser does not count as a confirmation of itself.
        self._accusers = {from_id}
        self.deadline_s = now + (max_s if k >= 1 else min_s)

    def confirm(self, from_id: str) -> bool:
        """Count an accusation from ``from_id``; True if it was new information.

        New information is worth re-gossiping: that is how independent confirmations
        reach other members even while everyone probes the suspect.
        """
        if self.confirmations >= self.k or from_id in self._accusers:
            return False
        self._accusers.add(from_id)
        self.confirmations += 1
        timeout_s = suspicion_total_timeout_s(self.confirmations, self.k, self.min_s, self.max_s)
        self.deadline_s = self.start_s + timeout_s
        return True
