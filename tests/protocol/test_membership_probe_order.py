"""Randomized round-robin probing and random picks (``protocol/membership/probe_order``)."""

from __future__ import annotations

from collections import Counter
from random import Random

import pytest

from protocol.membership.probe_order import ProbeOrder, pick_random, random_below

IDS = [f"n{i:02d}" for i in range(30)]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 1000, 2**31, 2**32 + 5])
def test_random_below_draws_what_randrange_draws(n: int) -> None:
    ours, stdlib = Random(n), Random(n)
    assert [random_below(ours, n) for _ in range(500)] == [stdlib.randrange(n) for _ in range(500)]


def test_random_below_is_uniform_enough() -> None:
    rng = Random(7)
    counts = Counter(random_below(rng, 6) for _ in range(60_000))
    assert set(counts) == set(range(6))
    assert all(9_500 < c < 10_500 for c in counts.values())


def order_of(ids: list[str], seed: int = 1, exclude: str = "n00") -> ProbeOrder:
    order = ProbeOrder(Random(seed), exclude=exclude)
    order.seed_shared(ids)
    return order


def test_each_round_probes_every_member_once_in_a_new_random_order() -> None:
    order = order_of(IDS)
    rounds = [[order.next(lambda n: True, lambda n: True) for _ in IDS[1:]] for _ in range(3)]
    for walked in rounds:
        assert sorted(walked) == IDS[1:]  # everyone but ourselves, once
    assert rounds[0] != rounds[1] != rounds[2]


def test_members_not_probeable_are_skipped_and_forgotten_ones_dropped() -> None:
    order = order_of(IDS)
    down = {"n03", "n04"}
    walked = [order.next(lambda n: n not in down, lambda n: True) for _ in range(len(IDS) - 3)]
    assert sorted(walked) == sorted(set(IDS[1:]) - down)
    order.forgot("n05")
    later = [order.next(lambda n: True, lambda n: n != "n05") for _ in range(2 * len(IDS))]
    assert "n05" not in later
    assert len(order) == len(IDS) - 1


def test_a_member_added_mid_round_is_probed_within_that_round() -> None:
    order = order_of(IDS)
    first = [order.next(lambda n: True, lambda n: True) for _ in range(5)]
    order.add("new")
    rest = [order.next(lambda n: True, lambda n: True) for _ in range(len(IDS) - 5)]
    assert sorted(first + rest) == sorted([*IDS[1:], "new"])


def test_pick_random_gives_distinct_accepted_members_never_ourselves() -> None:
    order = order_of(IDS)
    for _ in range(50):
        picked = order.pick(3, lambda n: n.endswith(("1", "2", "3", "0")))
        assert len(picked) == 3 == len(set(picked))
        assert all(n.endswith(("1", "2", "3", "0")) and n != "n00" for n in picked)
    assert pick_random(IDS, 3, lambda n: False, Random(1)) == []
    assert sorted(pick_random(IDS[:2], 5, lambda n: True, Random(1))) == IDS[:2]
