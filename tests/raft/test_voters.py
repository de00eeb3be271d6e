"""Voter selection: who votes, and the one-at-a-time plan that gets there."""

from __future__ import annotations

from collections.abc import Set as AbstractSet

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.raft.conf import ConfChange, ConfChangeKind, ConfState
from protocol.raft.voters import (
    MAX_VOTERS_DEFAULT,
    CandidateInfo,
    VoterPlan,
    choose_voters,
)

NOW = 1000.0
STABLE = 10.0

ADD_VOTER, ADD_LEARNER, REMOVE = (
    ConfChangeKind.ADD_VOTER,
    ConfChangeKind.ADD_LEARNER,
    ConfChangeKind.REMOVE_NODE,
)


def member(node_id: str, age_s: float = 100.0, healthy: bool = True) -> CandidateInfo:
    return CandidateInfo(node_id=node_id, stable_since_s=NOW - age_s, healthy=healthy)


def plan(
    members: list[CandidateInfo],
    voters: set[str],
    learners: AbstractSet[str] = frozenset(),
    max_voters: int = MAX_VOTERS_DEFAULT,
) -> VoterPlan:
    return choose_voters(
        members, NOW, voters, max_voters, STABLE, current_learners=frozenset(learners)
    )


def changes(result: VoterPlan) -> list[tuple[ConfChangeKind, str]]:
    return [(c.kind, c.node_id) for c in result.changes]


def test_a_lone_founder_stays_the_only_voter() -> None:
    result = plan([member("a")], {"a"})
    assert result.voters == {"a"} and result.changes == ()


def test_members_become_voters_only_after_the_stabilisation_time() -> None:
    members = [member("a"), member("b", age_s=STABLE), member("c", age_s=STABLE - 0.1)]
    result = plan(members, {"a"}, {"b", "c"})
    # b is stable, c not yet: two candidates make an even count, so one voter stays.
    assert result.voters == {"a"} and result.learners == {"b", "c"}
    members[2] = member("c", age_s=STABLE)
    result = plan(members, {"a"}, {"b", "c"})
    assert result.voters == {"a", "b", "c"}
    assert changes(result) == [(ADD_VOTER, "b"), (ADD_VOTER, "c")]


def test_the_voter_count_is_odd_and_at_most_max_voters() -> None:
    members = [member(f"n{i}", age_s=100 + i) for i in range(9)]
    for max_voters, expected in ((1, 1), (3, 3), (5, 5), (7, 7)):
        assert len(plan(members, {"n0"}, max_voters=max_voters).voters) == expected
    assert len(plan(members[:4], {"n0"}).voters) == 3
    assert len(plan(members[:6], {"n0"}).voters) == 5


def test_newcomers_are_chosen_oldest_first_then_by_node_id() -> None:
    members = [member("a"), member("z", age_s=500), member("y", age_s=300), member("x", 300)]
    assert plan(members, {"a"}).voters == {"a", "z", "x"}


def test_incumbents_keep_their_seat_over_older_newcomers() -> None:
    members = [member("a", 20), member("b", 20), member("c", 20), member("old", 9999)]
    result = plan(members, {"a", "b", "c"}, {"old"})
    assert result.voters == {"a", "b", "c"} and result.changes == ()


def test_an_unhealthy_voter_is_replaced_removing_dead_weight_first() -> None:
    members = [member("a"), member("b"), member("c", healthy=False), member("d")]
    result = plan(members, {"a", "b", "c"}, {"d"})
    assert result.voters == {"a", "b", "d"}
    assert changes(result) == [(ADD_LEARNER, "c"), (ADD_VOTER, "d")]


def test_without_a_replacement_the_cluster_shrinks_to_an_odd_count() -> None:
    members = [member("a", 300), member("b", 200), member("c", healthy=False)]
    result = plan(members, {"a", "b", "c"})
    assert result.voters == {"a"}
    assert changes(result) == [(ADD_LEARNER, "c"), (ADD_LEARNER, "b")]


def test_a_flapping_member_never_gets_a_seat() -> None:
    stable = [member("a"), member("b"), member("c")]
    for age_s in (1.0, 3.0, 0.5, 9.9):
        flapper = member("f", age_s=age_s)
        extra = member("g")
        result = plan([*stable, flapper, extra], {"a", "b", "c"}, {"f", "g"})
        assert "f" not in result.voters


def test_departed_members_are_removed_and_new_ones_added_as_learners() -> None:
    members = [member("a"), member("b"), member("c"), member("new", age_s=1)]
    result = plan(members, {"a", "b", "c", "gone"}, {"left"})
    assert result.voters == {"a", "b", "c"}
    assert changes(result) == [(REMOVE, "gone"), (ADD_LEARNER, "new"), (REMOVE, "left")]


def test_a_member_that_is_not_yet_a_learner_joins_as_learner_before_voting() -> None:
    result = plan([member("a"), member("b"), member("c")], {"a"})
    assert changes(result) == [
        (ADD_LEARNER, "b"),
        (ADD_VOTER, "b"),
        (ADD_LEARNER, "c"),
        (ADD_VOTER, "c"),
    ]


def test_if_nobody_qualifies_the_current_voters_stay() -> None:
    result = plan([member("a", healthy=False)], {"a"})
    assert result.voters == {"a"} and result.changes == ()


@pytest.mark.parametrize("max_voters", [0, 2, 4, 11, -1])
def test_max_voters_must_be_a_small_odd_number(max_voters: int) -> None:
    with pytest.raises(ValueError, match="max_voters"):
        plan([member("a")], {"a"}, max_voters=max_voters)


def test_a_member_listed_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        plan([member("a"), member("a")], {"a"})


members_strategy = st.lists(
    st.builds(
        CandidateInfo,
        node_id=st.sampled_from([f"n{i}" for i in range(10)]),
        stable_since_s=st.floats(0, NOW),
        healthy=st.booleans(),
    ),
    max_size=10,
    unique_by=lambda m: m.node_id,
)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    members_strategy,
    st.frozensets(st.sampled_from([f"n{i}" for i in range(12)]), min_size=1, max_size=6),
    st.frozensets(st.sampled_from([f"n{i}" for i in range(12)]), max_size=6),
    st.sampled_from([1, 3, 5]),
)
def test_the_plan_applied_one_change_at_a_time_reaches_the_desired_configuration(
    members: list[CandidateInfo],
    voters: frozenset[str],
    learners: frozenset[str],
    max_voters: int,
) -> None:
    result = choose_voters(members, NOW, voters, max_voters, STABLE, current_learners=learners)
    conf = ConfState(voters=voters, learners=learners - voters)
    for change in result.changes:
        before = conf
        conf = conf.apply(change)
        assert conf != before, f"{change} does nothing"
        assert conf.voters, f"{change} leaves no voters"
        assert len(conf.voters ^ before.voters) <= 1  # one voter at a time
    assert conf.voters == result.voters
    assert conf.learners == result.learners
    assert len(result.voters) <= max(max_voters, len(voters))
    qualified = [
        m
        for m in members
        if m.healthy and (m.node_id in voters or NOW - m.stable_since_s >= STABLE)
    ]
    if qualified:
        assert len(result.voters) % 2 == 1 and len(result.voters) <= max_voters
        assert result.voters <= {m.node_id for m in qualified}
    else:
        assert result.voters == voters
    # Asking again from the planned configuration changes nothing.
    again = choose_voters(
        members, NOW, conf.voters, max_voters, STABLE, current_learners=conf.learners
    )
    assert again.changes == () and again.voters == result.voters


def test_conf_change_kinds_cover_every_move() -> None:
    conf = ConfState(voters=frozenset({"a"}), learners=frozenset({"b"}))
    conf = conf.apply(ConfChange(kind=ADD_VOTER, node_id="b"))
    assert conf == ConfState(voters=frozenset({"a", "b"}))
    conf = conf.apply(ConfChange(kind=ADD_LEARNER, node_id="a"))
    assert conf == ConfState(voters=frozenset({"b"}), learners=frozenset({"a"}))
    conf = conf.apply(ConfChange(kind=REMOVE, node_id="a"))
    assert conf == ConfState(voters=frozenset({"b"}))
