"""One test per property of figure 3 and per claim of sections 5.1-5.4 of the Raft paper.

After etcd's ``raft_paper_test.go``: each test is named after the sentence it checks
("In Search of an Understandable Consensus Algorithm", Ongaro and Ousterhout, 2014).
PreVote is on, so "starts an election" means "runs a PreVote round, then the election".
"""

from __future__ import annotations

from collections import Counter
from random import Random

import pytest

from protocol.raft.entries import Entry, EntryKind
from protocol.raft.messages import (
    Append,
    AppendResponse,
    Heartbeat,
    RequestVote,
    VoteResponse,
)
from protocol.raft.node import RaftNode
from protocol.raft.roles import Role
from protocol.raft.simulation import Simulation
from protocol.raft.testing import Cluster, KVStateMachine, fast_config
from tests.raft.helpers import (
    VOTERS_3,
    VOTERS_5,
    drain,
    grant,
    make_leader,
    make_node,
    of_type,
    persistent,
)

ELECTION_TICKS = fast_config().election_ticks


def entry(index: int, term: int) -> Entry:
    return Entry(
        index=index,
        term=term,
        kind=EntryKind.NORMAL,
        data=KVStateMachine.command(f"i{index}", f"t{term}"),
    )


def log_terms(node: RaftNode) -> list[int]:
    """Terms of the entries after the bootstrap snapshot (index 2 on)."""
    return [e.term for e in node.log.slice(node.log.first_index, node.log.last_index + 1)]


def node_in_role(role: Role) -> RaftNode:
    node = make_node("a")
    if role is Role.LEADER:
        make_leader(node)
    elif role is not Role.FOLLOWER:
        node.start_election(transfer=False)
        if role is Role.CANDIDATE:
            grant(node, "b", pre_vote=True)
    assert node.role is role
    drain(node)
    return node


def append(node: RaftNode, *, prev: tuple[int, int], entries: list[Entry], commit: int) -> None:
    node.step(
        Append(
            term=node.term,
            from_id="b",
            to_id=node.id,
            prev_index=prev[0],
            prev_term=prev[1],
            entries=tuple(entries),
            commit=commit,
        )
    )


def ack(leader: RaftNode, follower: str, index: int) -> None:
    leader.step(
        AppendResponse(
            term=leader.term,
            from_id=follower,
            to_id=leader.id,
            index=index,
            reject=False,
            reject_hint=0,
            hint_term=0,
        )
    )


# --------------------------------------------------------------- figure 3 properties


def test_election_safety_at_most_one_leader_can_be_elected_in_a_given_term() -> None:
    # Two candidates in the same term split five voters: at most one of them wins.
    cluster = Cluster(VOTERS_5, seed=1)
    cluster.partition({"a", "b", "c"}, {"d", "e"})
    cluster.nodes["a"].start_election(transfer=False)
    cluster.nodes["d"].start_election(transfer=False)
    cluster.run()
    cluster.heal()
    cluster.tick(times=3 * ELECTION_TICKS)
    leaders_by_term = Counter(
        node.term for node in cluster.nodes.values() if node.role is Role.LEADER
    )
    assert leaders_by_term and max(leaders_by_term.values()) == 1
    # and across many randomized runs (the checker fails the run on a second leader)
    for seed in range(5):
        simulation = Simulation(seed)
        simulation.run(fault_ticks=80, liveness_ticks_max=150)
        assert simulation.result.leaders >= 1


def test_leader_append_only_a_leader_never_overwrites_or_deletes_entries_in_its_log() -> None:
    leader = make_node("a", state=persistent(VOTERS_3, [1, 2], term=2))
    make_leader(leader)
    leader.propose(b"x")
    before = leader.log.slice(2, leader.log.last_index + 1)
    # Neither a conflicting append in its own term nor a stale one shortens its log.
    for term in (leader.term, leader.term - 1):
        leader.step(
            Append(
                term=term,
                from_id="b",
                to_id="a",
                prev_index=1,
                prev_term=1,
                entries=(entry(2, term),),
                commit=1,
            )
        )
    assert leader.role is Role.LEADER
    assert leader.log.slice(2, leader.log.last_index + 1) == before


def test_log_matching_logs_sharing_an_entrys_index_and_term_are_identical_up_to_it() -> None:
    for seed in range(8):
        simulation = Simulation(seed)
        simulation.run(fault_ticks=100, liveness_ticks_max=150)
        nodes = [s.node for s in simulation.nodes.values() if s.node is not None]
        for a in nodes:
            for b in nodes:
                low = max(a.log.first_index, b.log.first_index)
                high = min(a.log.last_index, b.log.last_index)
                for index in range(high, low - 1, -1):
                    if a.log.term(index) == b.log.term(index):
                        assert a.log.slice(low, index + 1) == b.log.slice(low, index + 1)
                        break


def test_leader_completeness_a_committed_entry_is_in_the_log_of_every_later_leader() -> None:
    cluster = Cluster(VOTERS_3, seed=2)
    cluster.elect("a")
    cluster.isolate("c")
    index = cluster.propose("a", "k", "committed")
    assert cluster.nodes["a"].log.committed >= index
    cluster.crash("a")
    cluster.heal()
    # c lacks the committed entry, so b refuses it; only b can win.
    cluster.nodes["c"].start_election(transfer=False)
    cluster.run()
    assert cluster.nodes["c"].role is not Role.LEADER
    cluster.tick("b", "c", times=3 * ELECTION_TICKS)
    leader = cluster.leader()
    assert leader is not None and leader.id == "b"
    assert leader.log.entry(index).data == KVStateMachine.command("k", "committed")


def test_state_machine_safety_no_two_servers_apply_different_entries_at_one_index() -> None:
    # Leaders come and go; each leaves behind an uncommitted entry that must not apply.
    cluster = Cluster(VOTERS_3, ["l"], seed=3)
    cluster.elect("a")
    for round_number in range(4):
        leader = cluster.leader()
        assert leader is not None
        cluster.propose(leader.id, "k", f"v{round_number}")
        cluster.isolate(leader.id)
        leader.propose(KVStateMachine.command("k", "lost"))
        cluster.tick(*(n for n in cluster.nodes if n != leader.id), times=3 * ELECTION_TICKS)
        cluster.crash(leader.id)
        cluster.restart(leader.id)
        cluster.heal()
        cluster.tick(times=2)
    cluster.tick(times=3 * ELECTION_TICKS)
    applied = {
        node_id: {e.index: e for e in machine.applied}
        for node_id, machine in cluster.machines.items()
    }
    for a in applied.values():
        for b in applied.values():
            assert all(a[i] == b[i] for i in a.keys() & b.keys())
    assert len({m.digest() for m in cluster.machines.values()}) == 1
    lost = KVStateMachine.command("k", "lost")
    assert all(e.data != lost for m in cluster.machines.values() for e in m.applied)


# --------------------------------------------------------------- section 5.1: basics


def test_when_servers_start_up_they_begin_as_followers() -> None:
    node = make_node("a")
    assert (node.role, node.leader_id, node.term) == (Role.FOLLOWER, None, 1)


@pytest.mark.parametrize("role", list(Role))
def test_if_a_server_sees_a_larger_term_it_updates_its_term_and_reverts_to_follower(
    role: Role,
) -> None:
    node = node_in_role(role)
    term = node.term + 1
    node.step(Heartbeat(term=term, from_id="b", to_id="a", commit=1))
    assert (node.role, node.term, node.leader_id, node.vote) == (Role.FOLLOWER, term, "b", None)


def test_a_server_that_receives_a_request_with_a_stale_term_number_rejects_it() -> None:
    node = make_node("a", state=persistent(VOTERS_3, [2], term=3))
    append(node, prev=(2, 2), entries=[entry(3, 2)], commit=3)  # term 3: current
    node.step(
        Append(term=2, from_id="b", to_id="a", prev_index=3, prev_term=2, entries=(), commit=3)
    )
    node.step(Heartbeat(term=2, from_id="c", to_id="a", commit=3))
    replies = of_type(drain(node), AppendResponse)
    # The stale requests changed nothing and were answered with the newer term.
    assert node.term == 3 and node.log.committed == 3 and node.leader_id == "b"
    assert [(r.to_id, r.term) for r in replies[1:]] == [("b", 3), ("c", 3)]


# --------------------------------------------------------------- section 5.2: election


def test_leaders_send_periodic_heartbeats_to_all_followers() -> None:
    leader = node_in_role(Role.LEADER)
    leader.tick()
    heartbeats = of_type(drain(leader), Heartbeat)
    assert sorted(h.to_id for h in heartbeats) == ["b", "c"]
    assert all(h.term == leader.term for h in heartbeats)


def test_a_follower_that_receives_no_communication_for_an_election_timeout_starts_an_election() -> (
    None
):
    node = make_node("a", VOTERS_5)
    for _ in range(2 * ELECTION_TICKS):
        node.tick()
    assert node.role is Role.PRE_CANDIDATE and node.term == 1
    pre_votes = of_type(drain(node), RequestVote)
    assert {m.to_id for m in pre_votes} == {"b", "c", "d", "e"}
    assert all(m.pre_vote and m.term == 2 for m in pre_votes)
    grant(node, "b", pre_vote=True)
    grant(node, "c", pre_vote=True)
    # To begin an election a follower increments its term, votes for itself and
    # asks every other server for its vote.
    assert (node.role, node.term, node.vote) == (Role.CANDIDATE, 2, "a")
    votes = of_type(drain(node), RequestVote)
    assert {m.to_id for m in votes} == {"b", "c", "d", "e"}
    assert all(not m.pre_vote and m.term == 2 for m in votes)


@pytest.mark.parametrize(
    ("voters", "granted", "refused", "role"),
    [
        (1, 0, 0, Role.LEADER),
        (3, 1, 0, Role.LEADER),
        (3, 1, 1, Role.LEADER),
        (3, 0, 2, Role.FOLLOWER),
        (3, 0, 1, Role.CANDIDATE),
        (5, 2, 0, Role.LEADER),
        (5, 1, 1, Role.CANDIDATE),
        (5, 1, 3, Role.FOLLOWER),
        (5, 0, 0, Role.CANDIDATE),
    ],
)
def test_a_candidate_wins_with_votes_from_a_majority_and_loses_when_a_majority_refuses(
    voters: int, granted: int, refused: int, role: Role
) -> None:
    ids = VOTERS_5[:voters]
    node = make_node("a", ids)
    node.start_election(transfer=False)
    for voter in ids[1:]:
        if node.role is Role.PRE_CANDIDATE:
            grant(node, voter, pre_vote=True)
    others = list(ids[1:])
    for voter in others[:granted]:
        grant(node, voter, pre_vote=False)
    for voter in others[granted : granted + refused]:
        node.step(
            VoteResponse(term=node.term, from_id=voter, to_id="a", pre_vote=False, granted=False)
        )
    assert node.role is role


@pytest.mark.parametrize(
    ("vote", "candidate", "granted"),
    [
        (None, "b", True),
        (None, "c", True),
        ("b", "b", True),
        ("c", "c", True),
        ("b", "c", False),
        ("c", "b", False),
    ],
)
def test_each_server_votes_for_at_most_one_candidate_in_a_term_first_come_first_served(
    vote: str | None, candidate: str, granted: bool
) -> None:
    node = make_node("a", state=persistent(VOTERS_3, term=2, vote=vote))
    node.step(
        RequestVote(
            term=2,
            from_id=candidate,
            to_id="a",
            last_index=1,
            last_term=1,
            pre_vote=False,
            transfer=False,
        )
    )
    [reply] = of_type(drain(node), VoteResponse)
    assert reply.granted is granted
    assert node.vote == (candidate if granted else vote)


def test_a_candidate_that_hears_from_a_leader_of_at_least_its_term_returns_to_follower() -> None:
    for term_offset in (0, 1):
        node = node_in_role(Role.CANDIDATE)
        term = node.term + term_offset
        node.step(
            Append(
                term=term, from_id="c", to_id="a", prev_index=1, prev_term=1, entries=(), commit=1
            )
        )
        assert (node.role, node.term, node.leader_id) == (Role.FOLLOWER, term, "c")


def test_a_candidate_whose_election_times_out_starts_a_new_election_in_a_higher_term() -> None:
    node = node_in_role(Role.CANDIDATE)
    term = node.term
    for _ in range(2 * ELECTION_TICKS):
        node.tick()
    assert node.role is Role.PRE_CANDIDATE  # PreVote first: the term has not moved yet
    grant(node, "b", pre_vote=True)
    assert (node.role, node.term) == (Role.CANDIDATE, term + 1)


def test_election_timeouts_are_chosen_randomly_from_a_fixed_interval() -> None:
    timeouts = []
    for seed in range(200):
        node = make_node("a", seed=seed)
        ticks = 0
        while node.role is Role.FOLLOWER:
            node.tick()
            ticks += 1
        timeouts.append(ticks)
    assert min(timeouts) >= ELECTION_TICKS and max(timeouts) < 2 * ELECTION_TICKS
    assert len(set(timeouts)) == ELECTION_TICKS  # every value of the interval occurs


def test_randomized_election_timeouts_make_split_votes_rare() -> None:
    rounds, conflicts = 400, 0
    rng = Random(7)
    for _ in range(rounds):
        nodes = [make_node(v, VOTERS_5, seed=rng.getrandbits(32)) for v in VOTERS_5]
        timed_out: list[RaftNode] = []
        while not timed_out:
            for node in nodes:
                node.tick()
            timed_out = [n for n in nodes if n.role is not Role.FOLLOWER]
        conflicts += len(timed_out) > 1
    assert conflicts / rounds < 0.3


# --------------------------------------------------------------- section 5.3: replication


def test_the_leader_appends_a_command_to_its_log_and_sends_append_entries_to_followers() -> None:
    leader = node_in_role(Role.LEADER)
    for follower in ("b", "c"):
        ack(leader, follower, leader.log.last_index)
    drain(leader)
    last = leader.log.last_index
    index = leader.propose(b"cmd")
    assert index == last + 1 and leader.log.entry(index).data == b"cmd"
    appends = of_type(drain(leader), Append)
    assert sorted(m.to_id for m in appends) == ["b", "c"]
    assert all((m.prev_index, [e.data for e in m.entries]) == (last, [b"cmd"]) for m in appends)


@pytest.mark.parametrize(
    ("voters", "acks", "committed"),
    [(1, 0, True), (3, 0, False), (3, 1, True), (5, 1, False), (5, 2, True), (5, 4, True)],
)
def test_an_entry_is_committed_once_the_leader_has_replicated_it_on_a_majority(
    voters: int, acks: int, committed: bool
) -> None:
    ids = VOTERS_5[:voters]
    leader = make_node("a", ids)
    make_leader(leader)
    index = leader.propose(b"cmd")
    for follower in ids[1 : 1 + acks]:
        ack(leader, follower, index)
    assert (leader.log.committed >= index) is committed
    ready = leader.ready()
    assert (index in [e.index for e in ready.committed_entries]) is committed


def test_the_leader_tells_followers_the_commit_index_in_later_append_entries() -> None:
    leader = node_in_role(Role.LEADER)
    index = leader.propose(b"cmd")
    ack(leader, "b", index)
    appends = of_type(drain(leader), Append)
    assert appends and all(m.commit == index for m in appends)


def test_committing_an_entry_also_commits_all_preceding_entries_including_older_terms() -> None:
    leader = make_node("a", state=persistent(VOTERS_3, [1, 1, 2], term=2))
    make_leader(leader)  # term 3, no-op at index 5
    ack(leader, "b", 5)
    ready = leader.ready()
    assert [e.index for e in ready.committed_entries] == [2, 3, 4, 5]


def test_once_a_follower_learns_an_entry_is_committed_it_applies_it_in_log_order() -> None:
    follower = make_node("a", state=persistent(VOTERS_3, term=2))
    append(follower, prev=(1, 1), entries=[entry(2, 2), entry(3, 2), entry(4, 2)], commit=3)
    ready = follower.ready()
    assert [e.index for e in ready.committed_entries] == [2, 3]
    follower.advance(ready)
    follower.step(Heartbeat(term=2, from_id="b", to_id="a", commit=4))
    assert [e.index for e in follower.ready().committed_entries] == [4]


def test_a_follower_commits_no_further_than_the_last_entry_the_append_confirmed() -> None:
    # Figure 2: commitIndex = min(leaderCommit, index of last new entry).  Index 3 and
    # 4 here are leftovers of term 1 the leader has not yet replaced.
    follower = make_node("a", state=persistent(VOTERS_3, [1, 1, 1], term=2))
    append(follower, prev=(2, 1), entries=[], commit=4)
    assert follower.log.committed == 2


@pytest.mark.parametrize(
    ("prev", "accepted", "index"),
    [
        ((1, 1), True, 1),  # the snapshot's last entry always matches
        ((2, 1), True, 2),
        ((3, 2), True, 3),
        ((3, 1), False, 3),  # same index, other term
        ((4, 2), False, 4),  # beyond the end of the log
    ],
)
def test_a_follower_refuses_append_entries_unless_it_holds_the_preceding_entry(
    prev: tuple[int, int], accepted: bool, index: int
) -> None:
    follower = make_node("a", state=persistent(VOTERS_3, [1, 2], term=2))
    append(follower, prev=prev, entries=[], commit=1)
    [reply] = of_type(drain(follower), AppendResponse)
    assert (reply.reject, reply.index) == (not accepted, index)


@pytest.mark.parametrize(
    ("prev", "entries", "terms"),
    [
        ((3, 2), [(4, 3)], [1, 2, 3]),
        ((2, 1), [(3, 3), (4, 4)], [1, 3, 4]),
        ((1, 1), [(2, 1)], [1, 2]),  # matches: nothing after it is removed
        ((1, 1), [(2, 3)], [3]),  # conflict: it and all that follow it are removed
    ],
)
def test_a_follower_deletes_a_conflicting_entry_and_all_that_follow_it_then_appends(
    prev: tuple[int, int], entries: list[tuple[int, int]], terms: list[int]
) -> None:
    follower = make_node("a", state=persistent(VOTERS_3, [1, 2], term=4))
    append(follower, prev=prev, entries=[entry(i, t) for i, t in entries], commit=1)
    assert log_terms(follower) == terms


FIGURE_7_LEADER = [1, 1, 4, 4, 5, 5, 6, 6, 6]  # indices 2-10 (index 1 is term 1)
FIGURE_7_FOLLOWERS = {
    "a": [1, 1, 4, 4, 5, 5, 6, 6],
    "b": [1, 1, 4],
    "c": [1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d": [1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e": [1, 1, 4, 4, 4, 4],
    "f": [1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}


@pytest.mark.parametrize("case", sorted(FIGURE_7_FOLLOWERS))
def test_the_leader_forces_the_followers_logs_to_duplicate_its_own(case: str) -> None:
    cluster = Cluster(("lead", "follower", "voter"), seed=4)
    cluster.replace_state(
        "lead", persistent(("lead", "follower", "voter"), FIGURE_7_LEADER, term=7)
    )
    terms = FIGURE_7_FOLLOWERS[case]
    cluster.replace_state("follower", persistent(("lead", "follower", "voter"), terms, term=7))
    cluster.elect("lead")  # term 8, with the empty voter's vote
    cluster.propose("lead", "k", "v")
    leader, follower = cluster.nodes["lead"], cluster.nodes["follower"]
    assert leader.role is Role.LEADER
    assert log_terms(follower) == log_terms(leader) == [*FIGURE_7_LEADER, 8, 8]
    assert follower.log.slice(2, 13) == leader.log.slice(2, 13)


# --------------------------------------------------------------- section 5.4: safety


def test_a_request_vote_includes_the_index_and_term_of_the_candidates_last_log_entry() -> None:
    node = make_node("a", state=persistent(VOTERS_3, [1, 2, 2], term=2))
    node.start_election(transfer=False)
    requests = of_type(drain(node), RequestVote)
    assert {(m.last_index, m.last_term) for m in requests} == {(4, 2)}


@pytest.mark.parametrize(
    ("last_index", "last_term", "granted"),
    [
        (3, 2, True),  # same log
        (4, 2, True),  # same last term, longer
        (2, 2, False),  # same last term, shorter
        (2, 1, False),  # older last term
        (9, 1, False),  # older last term, however long
        (2, 3, True),  # newer last term, however short
    ],
)
def test_a_voter_denies_its_vote_if_its_own_log_is_more_up_to_date(
    last_index: int, last_term: int, granted: bool
) -> None:
    node = make_node("a", state=persistent(VOTERS_3, [1, 2], term=2))  # last (3, 2)
    node.step(
        RequestVote(
            term=3,
            from_id="b",
            to_id="a",
            last_index=last_index,
            last_term=last_term,
            pre_vote=False,
            transfer=False,
        )
    )
    [reply] = of_type(drain(node), VoteResponse)
    assert reply.granted is granted


def test_a_leader_never_commits_entries_from_previous_terms_by_counting_replicas() -> None:
    leader = make_node("a", state=persistent(VOTERS_3, [1, 2], term=2))
    make_leader(leader)  # term 3; its no-op is index 4
    ack(leader, "b", 3)  # a majority holds index 3, of term 2
    assert leader.log.committed == 1
    ack(leader, "b", 4)  # the current term's entry commits both
    assert leader.log.committed == 4


def test_figure_8_an_old_term_entry_on_a_majority_can_still_be_overwritten_if_uncommitted() -> None:
    # Figure 8 (c)-(d): S1 leads term 4 with index 3 from term 2 on S1, S2, S3 and an
    # entry of its own term only on itself; S5 (term 3 entry) can still be elected
    # by S2, S3, S4 and overwrite index 3: so S1 must not have committed it.
    ids = ("s1", "s2", "s3", "s4", "s5")
    cluster = Cluster(ids, seed=5)
    cluster.replace_state("s1", persistent(ids, [2, 4], term=4))
    cluster.replace_state("s2", persistent(ids, [2], term=4))
    cluster.replace_state("s3", persistent(ids, [2], term=4))
    cluster.replace_state("s4", persistent(ids, [], term=4))
    cluster.replace_state("s5", persistent(ids, [3], term=4))
    assert cluster.nodes["s1"].log.committed == 1
    cluster.isolate("s1")
    cluster.elect("s5")
    assert cluster.nodes["s5"].role is Role.LEADER
    cluster.heal()
    cluster.propose("s5", "k", "v")
    cluster.tick(times=2)  # the next heartbeat answer resumes the probe of s1
    assert all(log_terms(n)[0] == 3 for n in cluster.nodes.values())
