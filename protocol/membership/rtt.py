"""Round-trip times measured by our own probes, and when to publish them.

Theory of operation
-------------------
Every direct probe that is acked gives one RTT sample: ``now`` when the ack arrived
minus ``now`` when the ping left.  Samples feed an exponentially weighted moving
average per peer (:data:`RTT_EWMA_ALPHA`); indirect acks are not samples, they
measure a detour.

The averages reach the cluster through the local :class:`MemberRecord`
(``rtt_ms``, ``health``), whose every change costs a version bump and a broadcast to
every member.  So they are published *rarely*, and never more often than every
:data:`RTT_PUBLISH_INTERVAL_MIN_S`:

============================================================  ======================
change since the last publication                             published after
============================================================  ======================
first measurements; a published RTT moved by more than        RTT_PUBLISH_INTERVAL_MIN_S
RTT_PUBLISH_CHANGE_RATIO; health moved by HEALTH_PUBLISH_JUMP
an RTT moved by more than RTT_PUBLISH_NOISE_RATIO; a peer    the slow interval:
nearer by RTT_CHANGE_FLOOR_MS than a published one; a         RTT_PUBLISH_INTERVAL_S,
published peer gone; health changed at all
                                                              scaled like push-pull
anything smaller, or any move under RTT_CHANGE_FLOOR_MS       never (it is noise)
============================================================  ======================

The slow cadence is a check one slow interval after the last publication, or after
the last slow check that found nothing to publish (the core keeps that time).

Only the :data:`RTT_PEERS_PUBLISHED_MAX` nearest live peers are published, rounded
to :data:`RTT_PUBLISH_DECIMALS` decimals, so the record keeps fitting one datagram.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable

RTT_EWMA_ALPHA = 0.2
"""Weight of a new sample: about the last five probes of a peer dominate."""
RTT_PEERS_TRACKED_MAX = 16_384
"""Peers with an RTT average; matches the member bound."""
RTT_PEERS_PUBLISHED_MAX = 8
"""Nearest peers published in the local record."""
RTT_PUBLISH_DECIMALS = 2
"""Published RTTs are rounded to 10 microseconds."""
RTT_PUBLISH_INTERVAL_S = 30.0
"""Slow cadence for minor changes, stretched for large clusters like push-pull."""
RTT_PUBLISH_INTERVAL_MIN_S = 5.0
"""Never bump the local version for measurements more often than this."""
RTT_PUBLISH_CHANGE_RATIO = 0.5
"""A published RTT that moved by more than this fraction is published early."""
RTT_PUBLISH_NOISE_RATIO = 0.1
"""RTT moves below this fraction are jitter and never published."""
HEALTH_PUBLISH_JUMP = 3
"""A health score that moved by this much is published early; smaller moves wait."""
MILLISECONDS_PER_SECOND = 1000.0
RTT_SAMPLES_KEPT_MAX = 1024
"""Raw samples kept for a caller that drains them (a histogram); older ones drop."""
MIN_RTT_MS = 0.001
"""Floor of the denominator of a relative change (loopback RTTs round to 0)."""
RTT_CHANGE_FLOOR_MS = 1.0
"""Moves smaller than this never count, whatever their ratio: on a LAN the RTT is a
fraction of a millisecond and jitters by half of itself all the time, which would
re-publish every record every few seconds; placement cares about milliseconds."""

ROUNDING_MARGIN_MS = 10.0**-RTT_PUBLISH_DECIMALS
"""More than a published value's rounding can add to a move (see ``RttTracker.moved``)."""

PeerValues = tuple[tuple[str, float], ...]


class RttTracker:
    """EWMA of the RTT to each peer probed directly."""

    __slots__ = ("_alpha", "_ewma_ms", "_peers_max", "_samples", "samples_dropped")

    def __init__(
        self, alpha: float = RTT_EWMA_ALPHA, peers_max: int = RTT_PEERS_TRACKED_MAX
    ) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self._alpha = alpha
        self._peers_max = peers_max
        self._ewma_ms: dict[str, float] = {}
        self._samples: deque[float] = deque(maxlen=RTT_SAMPLES_KEPT_MAX)
        self.samples_dropped = 0
        """Samples that fell out of the bounded queue before anyone drained them."""

    def observe(self, peer_id: str, sent_s: float, received_s: float) -> float:
        """Fold one probe round trip into the average; return the new average in ms.

        The raw sample (seconds) is also kept for :meth:`drain_samples`.
        """
        sample_ms = max(0.0, received_s - sent_s) * MILLISECONDS_PER_SECOND
        if len(self._samples) >= RTT_SAMPLES_KEPT_MAX:
            self.samples_dropped += 1
        self._samples.append(sample_ms / MILLISECONDS_PER_SECOND)
        previous_ms = self._ewma_ms.get(peer_id)
        if previous_ms is None:
            if len(self._ewma_ms) >= self._peers_max:
                # Bounded: forget the peer measured first (dicts keep insertion order).
                del self._ewma_ms[next(iter(self._ewma_ms))]
            average_ms = sample_ms
        else:
            average_ms = previous_ms + self._alpha * (sample_ms - previous_ms)
        self._ewma_ms[peer_id] = average_ms
        return average_ms

    def seed(self, values: PeerValues) -> None:
        """Take ``values`` (a published view) as the averages of peers not measured yet.

        For a warm start: the view in a record we published long ago came from our own
        averages, so the first new sample of such a peer moves its average by
        ``alpha`` of the difference, as it would have, instead of replacing it (which
        would look like a large move and re-publish the record for nothing).
        """
        for peer_id, ms in values:
            if peer_id not in self._ewma_ms and len(self._ewma_ms) < self._peers_max:
                self._ewma_ms[peer_id] = ms

    def drain_samples(self) -> list[float]:
        """Round trips (seconds) measured since the last call, oldest first."""
        if not self._samples:
            return []
        samples = list(self._samples)
        self._samples.clear()
        return samples

    def forget(self, peer_id: str) -> None:
        """Drop the average of a peer that is gone."""
        self._ewma_ms.pop(peer_id, None)

    def estimate_ms(self, peer_id: str) -> float | None:
        """The current average to ``peer_id``, or ``None`` if never measured."""
        return self._ewma_ms.get(peer_id)

    def moved(self, published: PeerValues) -> bool:
        """Whether a view computed now could differ enough from ``published`` to be
        published early: no view was published yet while we have averages, or a
        published peer's average moved by about ``RTT_CHANGE_FLOOR_MS`` (rounding
        aside) or was forgotten.  False means :func:`publish_due` can only say yes at
        the slow cadence or for health, so the caller may skip building the view."""
        if not published:
            return bool(self._ewma_ms)
        averages = self._ewma_ms
        floor_ms = RTT_CHANGE_FLOOR_MS - ROUNDING_MARGIN_MS
        for peer_id, ms in published:
            average_ms = averages.get(peer_id)
            if average_ms is None or abs(average_ms - ms) >= floor_ms:
                return True
        return False

    def published_view(
        self, include: Callable[[str], bool], peers_max: int = RTT_PEERS_PUBLISHED_MAX
    ) -> PeerValues:
        """The nearest ``peers_max`` peers passing ``include``, rounded, sorted by peer id."""
        candidates = ((ms, peer) for peer, ms in self._ewma_ms.items() if include(peer))
        chosen = heapq.nsmallest(peers_max, candidates)
        return tuple(sorted((peer, round(ms, RTT_PUBLISH_DECIMALS)) for ms, peer in chosen))


def publish_due(
    *,
    published: PeerValues,
    candidate: PeerValues,
    published_health: int | None,
    candidate_health: int,
    since_last_publish_s: float,
    slow_interval_s: float,
    published_gone: bool = False,
) -> bool:
    """Whether the local record should be re-published with fresh measurements.

    ``published_gone``: a peer in the published view is no longer a live member.
    """
    if since_last_publish_s < RTT_PUBLISH_INTERVAL_MIN_S:
        return False
    first_measurements = bool(candidate) and not published
    rtt_change = _largest_relative_change(published, candidate)
    health_change = (
        math.inf if published_health is None else abs(candidate_health - published_health)
    )
    if first_measurements or rtt_change > RTT_PUBLISH_CHANGE_RATIO:
        return True
    if health_change >= HEALTH_PUBLISH_JUMP:
        return True
    if since_last_publish_s < slow_interval_s:
        return False
    return (
        published_gone
        or _nearer_peer_found(published, candidate)
        or rtt_change > RTT_PUBLISH_NOISE_RATIO
        or health_change > 0
    )


def _nearer_peer_found(published: PeerValues, candidate: PeerValues) -> bool:
    """A peer we did not publish is nearer than a published one by the floor or more,
    or there are more peers to publish than we did (a new member's first rounds).

    Merely *other* peers at about the same distance are not worth a broadcast to every
    member: in a large cluster the nearest few of the peers probed so far change all
    the time, and publishing each change would re-send every record every few minutes.
    """
    if len(candidate) > len(published):
        return True
    before = {peer for peer, _ in published}
    newcomers = [ms for peer, ms in candidate if peer not in before]
    if not newcomers:
        return False
    worst_ms = max(ms for _, ms in published)
    return min(newcomers) <= worst_ms - RTT_CHANGE_FLOOR_MS


def _largest_relative_change(published: PeerValues, candidate: PeerValues) -> float:
    """Largest relative RTT move among peers in both views (moves under the floor: 0)."""
    before = dict(published)
    return max(
        (
            abs(ms - before[peer]) / max(before[peer], MIN_RTT_MS)
            for peer, ms in candidate
            if peer in before and abs(ms - before[peer]) >= RTT_CHANGE_FLOOR_MS
        ),
        default=0.0,
    )
