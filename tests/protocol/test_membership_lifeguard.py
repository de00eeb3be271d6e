"""Lifeguard maths against memberlist's own tables: suspicion, awareness, retransmits."""

from __future__ import annotations

import pytest

from protocol.membership.awareness import Awareness
from protocol.membership.broadcast import retransmit_limit
from protocol.membership.suspicion import (
    Suspicion,
    expected_confirmations,
    remaining_suspicion_time_s,
    suspicion_timeout_s,
)


# memberlist suspicion_test.go TestSuspicion_remainingSuspicionTime (k=3, 2 s .. 30 s).
@pytest.mark.parametrize(
    ("confirmations", "k", "elapsed_s", "min_s", "max_s", "expected_s"),
    [
        (0, 3, 0.0, 2.0, 30.0, 30.0),
        (1, 3, 2.0, 2.0, 30.0, 14.0),
        (2, 3, 3.0, 2.0, 30.0, 4.810),
        (3, 3, 4.0, 2.0, 30.0, -2.0),
        (4, 3, 5.0, 2.0, 30.0, -3.0),
        (5, 3, 10.0, 2.0, 30.0, -8.0),
    ],
)
def test_remaining_suspicion_time_matches_memberlist(
    confirmations: int, k: int, elapsed_s: float, min_s: float, max_s: float, expected_s: float
) -> None:
    remaining_s = remaining_suspicion_time_s(confirmations, k, elapsed_s, min_s, max_s)
    assert remaining_s == pytest.approx(expected_s, abs=1e-9)


# memberlist suspicion_test.go TestSuspicion_Timer: k=3, min 500 ms, max 2 s, from "me".
# memberlist checks 810 ms within its 25 ms sleep fudge; the exact value is 811 ms.
@pytest.mark.parametrize(
    ("confirmations", "expected_new", "expected_timeout_s"),
    [
        ([], [], 2.0),
        (["me", "foo"], [False, True], 1.250),
        (["me", "foo", "foo", "foo"], [False, True, False, False], 1.250),
        (["me", "foo", "bar"], [False, True, True], 0.811),
        (["me", "foo", "bar", "baz"], [False, True, True, True], 0.5),
        (["me", "foo", "bar", "baz", "zoo"], [False, True, True, True, False], 0.5),
    ],
)
def test_suspicion_timer_shrinks_with_independent_confirmations(
    confirmations: list[str], expected_new: list[bool], expected_timeout_s: float
) -> None:
    suspicion = Suspicion(from_id="me", k=3, min_s=0.5, max_s=2.0, now=100.0)
    assert [suspicion.confirm(accuser) for accuser in confirmations] == expected_new
    assert suspicion.deadline_s - 100.0 == pytest.approx(expected_timeout_s, abs=1e-9)


def test_without_expected_confirmations_the_timer_starts_at_the_minimum() -> None:
    suspicion = Suspicion(from_id="me", k=0, min_s=0.1, max_s=30.0, now=0.0)
    assert suspicion.deadline_s == 0.1
    assert suspicion.confirm("foo") is False


def test_late_confirmations_never_extend_the_deadline() -> None:
    suspicion = Suspicion(from_id="me", k=1, min_s=0.1, max_s=30.0, now=0.0)
    assert suspicion.confirm("foo") is True
    assert suspicion.deadline_s == pytest.approx(0.1)  # already overdue: fire at once


# memberlist util_test.go TestSuspicionTimeout: suspicionTimeout(3, n, 1 s) / 3.
@pytest.mark.parametrize(
    ("members", "expected_s"),
    [(5, 1.0), (10, 1.0), (50, 1.698), (100, 2.0), (500, 2.698), (1000, 3.0)],
)
def test_suspicion_timeout_scales_with_log10_of_the_cluster(
    members: int, expected_s: float
) -> None:
    assert suspicion_timeout_s(3, members, 1.0) / 3 == pytest.approx(expected_s, abs=1e-9)


@pytest.mark.parametrize(
    ("suspicion_mult", "members", "k"),
    [(4, 1, 0), (4, 3, 0), (4, 4, 2), (4, 100, 2), (6, 5, 0), (6, 6, 4), (3, 3, 1), (1, 50, 0)],
)
def test_expected_confirmations_need_enough_possible_accusers(
    suspicion_mult: int, members: int, k: int
) -> None:
    assert expected_confirmations(suspicion_mult, members) == k


# memberlist util_test.go TestRetransmitLimit.
@pytest.mark.parametrize(
    ("mult", "members", "limit"), [(3, 0, 0), (3, 1, 3), (3, 99, 6), (4, 1000, 16)]
)
def test_retransmit_limit(mult: int, members: int, limit: int) -> None:
    assert retransmit_limit(mult, members) == limit


# memberlist awareness_test.go TestAwareness: max 8, timeout scaled by score + 1.
def test_awareness_clamps_and_scales_like_memberlist() -> None:
    cases = [(0, 0, 1.0), (-1, 0, 1.0), (-10, 0, 1.0), (1, 1, 2.0), (-1, 0, 1.0)]
    cases += [(10, 7, 8.0), (-1, 6, 7.0), (-1, 5, 6.0), (-1, 4, 5.0), (-1, 3, 4.0)]
    cases += [(-1, 2, 3.0), (-1, 1, 2.0), (-1, 0, 1.0), (-1, 0, 1.0)]
    awareness = Awareness(8)
    for delta, score, timeout_s in cases:
        awareness.apply_delta(delta)
        assert awareness.score == score
        assert awareness.scale_s(1.0) == timeout_s


def test_awareness_needs_a_positive_maximum() -> None:
    with pytest.raises(ValueError, match="max_multiplier"):
        Awareness(0)
