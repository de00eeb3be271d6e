"""Round-trip times measured by our own probes, and when to publish them.

Theory of operation
-------------------
Every direct probe that is acked gives one RTT sample: ``now`` when the ack arrived
minus ``now`` when the ping left.  Samples feed an exponentially weighted moving
average per peer (:data:`RTT_EWMA_ALPHA`); indirect acks are not samples, they
measure a detour.

The averages reach the cluster through the local :class:`MemberRecord`
(``rtt_ms``), whose every change costs a version bump and a broadcast.  So they are
published *rarely*:

* at most every :data:`RTT_PUBLISH_INTERVAL_MIN_S`, and only when something moved
  noticeably (a published RTT by more than :data:`RTT_PUBLISH_CHANGE_RATIO`, the
  health score, or the first measurements ever);
* otherwise every :data:`RTT_PUBLISH_INTERVAL_S` if anything changed at all.

Only the :data:`RTT_PEERS_PUBLISHED_MAX` nearest peers are published, rounded to
:data:`RTT_PUBLISH_DECIMALS` decimals, so the record keeps fitting one datagram and
small jitter does not read as a change.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

RTT_EWMA_ALPHA = 0.2
"""Weight of a new sample: about the last five probes of a peer dominate."""
RTT_PEERS_TRACKED_MAX = 4096
"""Peers with an RTT average; matches the member bound."""
RTT_PEERS_PUBLISHED_MAX = 8
"""Nearest peers published in the local record."""
RTT_PUBLISH_DECIMALS = 2
"""Published RTTs are rounded to 10 microseconds."""
RTT_PUBLISH_INTERVAL_S = 30.0
"""Refresh the published view this often if anything changed."""
RTT_PUBLISH_INTERVAL_MIN_S = 5.0
"""Never bump the local version for measurements more often than this."""
RTT_PUBLISH_CHANGE_RATIO = 0.5
"""A published RTT that moved by more than this fraction is published early."""
MILLISECONDS_PER_SECOND = 1000.0

PeerValues = tuple[tuple[str, float], ...]


class RttTracker:
    """EWMA of the RTT to each peer probed directly."""

    __slots__ = ("_alpha", "_ewma_ms", "_peers_max")

    def __init__(
        self, alpha: float = RTT_EWMA_ALPHA, peers_max: int = RTT_PEERS_TRACKED_MAX
    ) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self._alpha = alpha
        self._peers_max = peers_max
        self._ewma_ms: dict[str, float] = {}

    def observe(self, peer_id: str, sent_s: float, received_s: float) -> float:
        """Fold one probe round trip into the average; return the new average in ms."""
        sample_ms = max(0.0, received_s - sent_s) * MILLISECONDS_PER_SECOND
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

    def forget(self, peer_id: str) -> None:
        """Drop the average of a peer that is gone."""
        self._ewma_ms.pop(peer_id, None)

    def estimate_ms(self, peer_id: str) -> float | None:
        """The current average to ``peer_id``, or ``None`` if never measured."""
        return self._ewma_ms.get(peer_id)

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
) -> bool:
    """Whether the local record should be re-published with fresh measurements."""
    if candidate == published and candidate_health == published_health:
        return False
    if since_last_publish_s >= RTT_PUBLISH_INTERVAL_S:
        return True
    if since_last_publish_s < RTT_PUBLISH_INTERVAL_MIN_S:
        return False
    if candidate_health != published_health or (candidate and not published):
        return True
    old = dict(published)
    for peer, rtt_ms in candidate:
        before_ms = old.get(peer)
        if before_ms is None:
            continue
        if abs(rtt_ms - before_ms) > RTT_PUBLISH_CHANGE_RATIO * max(before_ms, 1e-3):
            return True
    return False
