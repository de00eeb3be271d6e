"""Published reference figures the membership simulation is measured against.

Theory of operation
-------------------
Two anchors, computed for the same fanout, gossip interval, probe interval and loss
as the simulated cluster, so measured and expected numbers sit side by side:

* SWIM (Das, Gupta, Motivala 2002, section 3.1): with each member pinging one
  random member per protocol period, a crashed member is first detected after
  ``e / (e - 1)`` periods on average (about 1.58).  The paper's "detection" is the
  failed probe, i.e. our first *suspicion*, not the later death declaration.
* Serf's convergence model (serf.io/docs/internals/simulator): after ``r`` gossip
  rounds the infected fraction is ``1 / (1 + (N + 1) e^(-c r))`` with
  ``c = fanout * 0.5 * (1 - loss)``, one round per gossip interval.  Solving for
  99.9% gives :func:`serf_dissemination_99_9_s`; Serf publishes 1.84 s at N=1,000 and
  2.15 s at N=10,000 for fanout 3, 200 ms, no loss (:data:`SERF_PUBLISHED_S`).
  It is a continuous epidemic model: at N=10, "99.9% of members" means all ten,
  a tail the model smooths away, so small clusters get a tolerance (see the tests).
"""

from __future__ import annotations

import math

SWIM_FIRST_DETECTION_PERIODS = math.e / (math.e - 1)
"""Expected probe periods from a crash to its first detection (SWIM section 3.1)."""
DISSEMINATION_FRACTION = 0.999
"""Share of live members that must hold a record change for it to count as spread."""
SERF_PUBLISHED_S = {1000: 1.84, 10_000: 2.15}
"""Serf's published 99.9% convergence times at fanout 3, 200 ms gossip, no loss."""


def swim_first_detection_s(probe_interval_s: float) -> float:
    """SWIM's expected time from a crash to the first failed probe of it."""
    return SWIM_FIRST_DETECTION_PERIODS * probe_interval_s


def serf_rounds(members: int, fanout: int, loss: float, fraction: float) -> float:
    """Gossip rounds until ``fraction`` of ``members`` are infected (Serf's model)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if not 0.0 <= loss < 1.0:
        raise ValueError(f"loss must be in [0, 1), got {loss}")
    c = fanout * 0.5 * (1.0 - loss)
    return math.log((members + 1) / (1.0 / fraction - 1.0)) / c


def serf_dissemination_99_9_s(
    members: int, fanout: int, gossip_interval_s: float, loss: float
) -> float:
    """Serf's model: seconds until 99.9% of ``members`` hold a change."""
    rounds = serf_rounds(members, fanout, loss, DISSEMINATION_FRACTION)
    return rounds * gossip_interval_s
