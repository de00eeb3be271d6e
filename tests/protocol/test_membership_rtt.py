"""RTT averages from probes, and the rules that keep their publication rare."""

from __future__ import annotations

import pytest

from protocol.membership.rtt import (
    RTT_PEERS_PUBLISHED_MAX,
    RTT_SAMPLES_KEPT_MAX,
    RttTracker,
    publish_due,
)


def test_the_average_is_an_ewma_of_probe_round_trips() -> None:
    tracker = RttTracker(alpha=0.2)
    assert tracker.observe("b", sent_s=10.0, received_s=10.010) == pytest.approx(10.0)
    assert tracker.observe("b", sent_s=11.0, received_s=11.020) == pytest.approx(12.0)
    assert tracker.estimate_ms("b") == pytest.approx(12.0)
    assert tracker.estimate_ms("c") is None


def test_the_published_view_keeps_the_nearest_live_peers_rounded_and_sorted() -> None:
    tracker = RttTracker()
    for index in range(12):
        tracker.observe(f"p{index:02d}", 0.0, (12 - index) / 1000 + 0.0000123)
    view = tracker.published_view(lambda peer: peer != "p11")
    assert len(view) == RTT_PEERS_PUBLISHED_MAX
    assert [peer for peer, _ in view] == sorted(f"p{i:02d}" for i in range(3, 11))
    assert dict(view)["p10"] == 2.01


def test_the_tracker_is_bounded() -> None:
    tracker = RttTracker(peers_max=3)
    for peer in "abcd":
        tracker.observe(peer, 0.0, 0.001)
    assert tracker.estimate_ms("a") is None
    assert tracker.estimate_ms("d") == pytest.approx(1.0)


BASE = (("b", 10.0), ("c", 20.0))


def test_a_published_peer_that_is_gone_is_replaced_at_the_slow_interval() -> None:
    after = (("b", 10.0), ("d", 20.0))
    rules = {"published_health": 0, "candidate_health": 0, "slow_interval_s": 30.0}
    assert not publish_due(
        published=BASE, candidate=after, since_last_publish_s=6.0, published_gone=True, **rules
    )
    assert publish_due(
        published=BASE, candidate=after, since_last_publish_s=30.0, published_gone=True, **rules
    )


@pytest.mark.parametrize(
    ("published", "candidate", "health", "since_s", "due"),
    [
        ((), (("b", 10.0),), (0, 0), 4.9, False),  # never faster than the minimum
        ((), (("b", 10.0),), (0, 0), 5.0, True),  # first measurements
        (BASE, (("b", 16.0), ("c", 20.0)), (0, 0), 6.0, True),  # +60%: early
        (BASE, (("b", 12.0), ("c", 20.0)), (0, 0), 6.0, False),  # +20%: waits
        (BASE, (("b", 12.0), ("c", 20.0)), (0, 0), 30.0, True),  # ... for the slow interval
        (BASE, (("b", 10.5), ("c", 20.0)), (0, 0), 1000.0, False),  # +5%: jitter, never
        (BASE, (("b", 10.0), ("d", 20.0)), (0, 0), 1000.0, False),  # another peer as far
        (BASE, (("b", 10.0), ("d", 19.5)), (0, 0), 1000.0, False),  # nearer, under 1 ms
        (BASE, (("b", 10.0), ("d", 18.0)), (0, 0), 6.0, False),  # nearer by 2 ms: waits
        (BASE, (("b", 10.0), ("d", 18.0)), (0, 0), 30.0, True),  # ... for the slow interval
        ((("b", 10.0),), BASE, (0, 0), 30.0, True),  # more peers measured than published
        (BASE, BASE, (0, 3), 6.0, True),  # health jumped
        (BASE, BASE, (0, 1), 6.0, False),  # health wobbled: waits
        (BASE, BASE, (0, 1), 30.0, True),
        (BASE, BASE, (None, 0), 6.0, True),  # health never published
        (BASE, BASE, (2, 2), 1000.0, False),  # nothing changed
    ],
)
def test_publication_rules(
    published: tuple[tuple[str, float], ...],
    candidate: tuple[tuple[str, float], ...],
    health: tuple[int | None, int],
    since_s: float,
    due: bool,
) -> None:
    assert (
        publish_due(
            published=published,
            candidate=candidate,
            published_health=health[0],
            candidate_health=health[1],
            since_last_publish_s=since_s,
            slow_interval_s=30.0,
        )
        is due
    )


def test_raw_samples_are_kept_for_a_histogram_and_drained_once() -> None:
    tracker = RttTracker()
    tracker.observe("b", 1.0, 1.002)
    tracker.observe("b", 2.0, 2.004)
    assert tracker.drain_samples() == pytest.approx([0.002, 0.004])
    assert tracker.drain_samples() == []
    for i in range(RTT_SAMPLES_KEPT_MAX + 5):
        tracker.observe("c", float(i), float(i) + 0.001)
    assert len(tracker.drain_samples()) == RTT_SAMPLES_KEPT_MAX
    assert tracker.samples_dropped == 5


def test_moved_tells_when_an_early_publication_is_possible_at_all() -> None:
    tracker = RttTracker(alpha=1.0)
    assert not tracker.moved(())  # nothing measured, nothing published
    tracker.observe("b", 0.0, 0.0105)
    assert tracker.moved(())  # first measurements
    tracker.observe("c", 0.0, 0.020)
    assert not tracker.moved(BASE)  # b moved 0.5 ms: under the floor
    assert tracker.moved((("b", 10.0), ("x", 20.0)))  # x is not measured (forgotten)
    tracker.observe("c", 0.0, 0.021)
    assert tracker.moved(BASE)  # c moved by the floor
    # Whenever moved() is False, publish_due before the slow interval says no too.
    tracker.observe("c", 0.0, 0.02098)
    candidate = tracker.published_view(lambda peer: True)
    assert not tracker.moved(BASE)
    assert not publish_due(
        published=BASE,
        candidate=candidate,
        published_health=0,
        candidate_health=0,
        since_last_publish_s=10.0,
        slow_interval_s=30.0,
    )
