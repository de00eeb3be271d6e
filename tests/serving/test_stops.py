"""Stop strings across arbitrary splits of the streamed text."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vramancer_node.serving.stops import StopMatcher


def run(stops: list[str], deltas: list[str]) -> tuple[str, bool]:
    matcher = StopMatcher(stops)
    out = "".join(matcher.feed(delta) for delta in deltas)
    return (out if matcher.stopped else out + matcher.flush()), matcher.stopped


def test_a_stop_split_over_deltas_is_found_and_dropped() -> None:
    assert run(["Observer:"], ["The answer. Obs", "erv", "er: more"]) == ("The answer. ", True)


def test_a_false_start_is_released() -> None:
    matcher = StopMatcher(["STOP"])
    assert matcher.feed("abST") == "ab"
    assert matcher.feed("x") == "STx"
    assert not matcher.stopped


def test_the_earliest_of_several_stops_wins() -> None:
    assert run(["cd", "b"], ["abcd"]) == ("a", True)


def test_empty_stop_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        StopMatcher([""])


@given(
    st.text(alphabet="abc", max_size=30),
    st.lists(st.text(alphabet="abc", min_size=1, max_size=3), min_size=1, max_size=3),
    st.lists(st.integers(min_value=0, max_value=30), max_size=8),
)
def test_any_split_gives_the_text_before_the_first_completed_stop(
    text: str, stops: list[str], cuts: list[int]
) -> None:
    """Generation ends at the first delta that completes a stop string, so the answer
    is the text before the earliest stop within the text received up to that delta
    (a longer stop that would have completed later never gets the chance: with stops
    ``c`` and ``aca``, ``ac`` + ``a`` stops at ``c`` while ``aca`` at once stops at 0)."""
    points = sorted({0, len(text), *(min(c, len(text)) for c in cuts)})
    deltas = [text[a:b] for a, b in itertools.pairwise(points)]
    expected = (text, False)
    for end in points[1:]:
        hits = [i for i in (text[:end].find(stop) for stop in stops) if i >= 0]
        if hits:
            expected = (text[: min(hits)], True)
            break
    assert run(stops, deltas) == expected


def test_a_stop_completed_by_an_earlier_delta_wins_over_a_longer_one() -> None:
    assert run(["c", "aca"], ["ac", "a"]) == ("a", True)
    assert run(["c", "aca"], ["aca"]) == ("", True)
