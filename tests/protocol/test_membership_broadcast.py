"""The transmit-limited piggyback queue (memberlist queue_test.go, in spirit)."""

from __future__ import annotations

from protocol.membership.broadcast import BroadcastQueue, retransmit_limit

BIG = 10_000


def test_each_broadcast_is_sent_exactly_retransmit_limit_times() -> None:
    queue = BroadcastQueue(part_bytes_max=BIG)
    queue.queue("a", b"alive-a")
    limit = retransmit_limit(4, 10)  # 4 * ceil(log10(11)) = 8
    sent = [queue.take(BIG, members=10, retransmit_mult=4) for _ in range(limit + 3)]
    assert sent[:limit] == [[b"alive-a"]] * limit
    assert sent[limit:] == [[], [], []]
    assert len(queue) == 0


def test_the_limit_follows_the_cluster_size_at_send_time() -> None:
    queue = BroadcastQueue(part_bytes_max=BIG)
    queue.queue("a", b"x")
    assert queue.take(BIG, members=1, retransmit_mult=2) == [b"x"]
    assert queue.transmits("a") == 1
    assert queue.take(BIG, members=1, retransmit_mult=2) == [b"x"]  # limit 2 reached
    assert "a" not in queue


def test_a_newer_broadcast_about_a_member_replaces_the_older_one() -> None:
    queue = BroadcastQueue(part_bytes_max=BIG)
    queue.queue("a", b"suspect-a")
    queue.take(BIG, members=10, retransmit_mult=4)
    queue.queue("a", b"alive-a-refuted")
    assert len(queue) == 1
    assert queue.transmits("a") == 0  # the new rumour starts afresh
    assert queue.take(BIG, members=10, retransmit_mult=4) == [b"alive-a-refuted"]


def test_fresh_broadcasts_go_first_then_large_then_new() -> None:
    queue = BroadcastQueue(part_bytes_max=BIG)
    queue.queue("old", b"o" * 10)
    queue.take(BIG, members=100, retransmit_mult=4)  # "old" now has 1 transmit
    queue.queue("small", b"s" * 5)
    queue.queue("large", b"l" * 20)
    queue.queue("small-newer", b"n" * 5)
    taken = queue.take(BIG, members=100, retransmit_mult=4)
    assert taken == [b"l" * 20, b"n" * 5, b"s" * 5, b"o" * 10]


def test_take_fills_the_byte_budget_and_skips_what_does_not_fit() -> None:
    queue = BroadcastQueue(part_bytes_max=BIG)
    queue.queue("large", b"l" * 60)
    queue.queue("medium", b"m" * 30)
    queue.queue("small", b"s" * 10)
    assert queue.take(45, members=100, retransmit_mult=4) == [b"m" * 30, b"s" * 10]
    assert queue.transmits("large") == 0
    assert queue.take(45, members=100, retransmit_mult=4) == [b"m" * 30, b"s" * 10]
    # The fresh large one finally gets room, then the others fill what is left.
    assert queue.take(95, members=100, retransmit_mult=4) == [b"l" * 60, b"m" * 30]


def test_the_queue_is_bounded_and_prunes_the_most_sent_oldest_first() -> None:
    queue = BroadcastQueue(part_bytes_max=BIG, entries_max=3)
    queue.queue("a", b"a")
    queue.queue("b", b"b")
    queue.take(1, members=100, retransmit_mult=4)  # "b" (newest) sent once
    queue.queue("c", b"c")
    queue.queue("d", b"d")
    assert len(queue) == 3
    assert "b" not in queue
    assert queue.dropped == 1


def test_parts_that_can_never_fit_a_datagram_are_refused() -> None:
    queue = BroadcastQueue(part_bytes_max=8)
    queue.queue("a", b"small")
    queue.queue("a", b"far too large")
    assert "a" not in queue  # the older rumour is stale either way
    assert queue.oversized == 1


def test_discard_and_stale_heap_entries_do_not_leak_into_take() -> None:
    queue = BroadcastQueue(part_bytes_max=BIG)
    for round_number in range(50):
        queue.queue("a", f"a{round_number}".encode())
    queue.queue("b", b"b")
    queue.discard("b")
    assert queue.take(BIG, members=10, retransmit_mult=4) == [b"a49"]
