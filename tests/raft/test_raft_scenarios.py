"""Scripted Raft scenarios: faults played out step by step on a FIFO in-memory network.

Each scenario also runs with the feature it exercises switched off where that makes
sense, to show the assertion would catch its absence.
"""

from __future__ import annotations

import contextlib
import dataclasses

import pytest

from protocol.raft.conf import ConfChange, ConfChangeKind
from protocol.raft.errors import (
    ConfChangeInProgress,
    LeaderTransferInProgress,
    NotLeader,
)
from protocol.raft.messages import (
    Append,
    AppendResponse,
    Heartbeat,
    InstallSnapshot,
    Message,
    RequestVote,
    VoteResponse,
)
from protocol.raft.roles import Role
from protocol.raft.testing import Cluster, KVStateMachine, fast_config
from tests.raft.helpers import VOTERS_3, VOTERS_5, drain, grant, make_leader, make_node, of_type

ELECTION_TICKS = fast_config().election_ticks
LOST = KVStateMachine.command("k", "lost")


def leader_of(cluster: Cluster) -> str:
    leader = cluster.leader()
    assert leader is not None, cluster.nodes
    return leader.id


def applied_data(cluster: Cluster, node_id: str) -> list[bytes]:
    return [e.data for e in cluster.machines[node_id].applied]


def converged(cluster: Cluster) -> bool:
    running = [n for n in cluster.nodes if n not in cluster.down]
    return (
        len({cluster.machines[n].digest() for n in running}) == 1
        and len({cluster.nodes[n].log.committed for n in running}) == 1
    )


def test_partitioned_leader_is_replaced_and_its_uncommitted_entries_are_discarded() -> None:
    cluster = Cluster(VOTERS_5, seed=10)
    cluster.elect("a")
    cluster.propose("a", "k", "committed")
    cluster.isolate("a")
    cluster.nodes["a"].propose(LOST)
    cluster.tick(times=3 * ELECTION_TICKS)
    new_leader = leader_of(cluster)
    assert new_leader != "a"
    assert cluster.nodes["a"].role is Role.FOLLOWER  # CheckQuorum stepped it down
    cluster.propose(new_leader, "k", "after")
    cluster.heal()
    cluster.tick(times=3)
    assert cluster.nodes["a"].leader_id == new_leader
    assert converged(cluster)
    assert all(LOST not in applied_data(cluster, n) for n in cluster.nodes)
    assert all(m.data["k"] == "after" for m in cluster.machines.values())


@pytest.mark.parametrize("pre_vote", [True, False])
def test_flapping_voter_neither_disrupts_the_leader_nor_falls_behind(pre_vote: bool) -> None:
    config = fast_config(pre_vote=pre_vote, check_quorum=pre_vote)
    cluster = Cluster(VOTERS_3, config=config, seed=11)
    cluster.elect("a")
    term = cluster.nodes["a"].term
    for cycle in range(8):
        cluster.isolate("c")
        for tick in range(ELECTION_TICKS * (1 + cycle % 3)):
            cluster.tick()
            leader = cluster.leader()
            if tick % 4 == 0 and leader is not None:
                cluster.propose(leader.id, "k", f"{cycle}.{tick}")
        cluster.heal()
        cluster.tick(times=2)
    disrupted = cluster.nodes["a"].role is not Role.LEADER or cluster.nodes["a"].term != term
    # With PreVote and CheckQuorum the flapping voter never disturbs the leader;
    # without them it deposes it again and again.
    assert disrupted is not pre_vote
    cluster.tick(times=3 * ELECTION_TICKS)
    assert converged(cluster)


def test_lost_votes_elections_are_retried_until_one_succeeds() -> None:
    cluster = Cluster(VOTERS_5, seed=12)
    lost = {"count": 0}

    def lose_votes(message: Message) -> bool:
        if isinstance(message, VoteResponse) and lost["count"] < 12:
            lost["count"] += 1
            return True
        return False

    cluster.drop = lose_votes
    for _ in range(20 * ELECTION_TICKS):
        cluster.tick()
        if cluster.leader() is not None:
            break
    assert lost["count"] == 12  # every early vote was lost: those elections failed
    leaders = [n for n in cluster.nodes.values() if n.role is Role.LEADER]
    assert len(leaders) == 1
    cluster.propose(leaders[0].id, "k", "v")
    assert converged(cluster)


def test_divergent_logs_are_repaired_by_the_new_leader() -> None:
    cluster = Cluster(VOTERS_3, seed=13)
    cluster.elect("a")
    cluster.propose("a", "k", "base")
    cluster.isolate("a")  # a appends entries nobody else will ever see
    for value in ("x1", "x2", "x3"):
        cluster.nodes["a"].propose(KVStateMachine.command("k", value))
    cluster.run()
    cluster.crash("a")
    cluster.heal()
    cluster.tick("b", "c", times=3 * ELECTION_TICKS)
    new_leader = leader_of(cluster)
    for value in ("y1", "y2"):
        cluster.propose(new_leader, "k", value)
    diverged_at = cluster.nodes["a"].log.last_index - 2
    assert cluster.nodes["a"].log.term(diverged_at) != cluster.nodes[new_leader].log.term(
        diverged_at
    )
    cluster.restart("a")
    cluster.tick(times=3)
    a, leader = cluster.nodes["a"], cluster.nodes[new_leader]
    assert a.log.slice(2, a.log.last_index + 1) == leader.log.slice(2, leader.log.last_index + 1)
    assert cluster.machines["a"].data["k"] == "y2"


@pytest.mark.parametrize("pre_vote", [True, False])
def test_pre_vote_prevents_term_inflation_by_a_partitioned_node(pre_vote: bool) -> None:
    config = fast_config(pre_vote=pre_vote, check_quorum=False)
    cluster = Cluster(VOTERS_3, config=config, seed=14)
    cluster.elect("a")
    term = cluster.nodes["a"].term
    cluster.isolate("c")
    cluster.tick(times=10 * ELECTION_TICKS)
    assert (cluster.nodes["c"].term == term) is pre_vote
    cluster.heal()
    cluster.tick(times=3 * ELECTION_TICKS)
    assert (cluster.nodes["a"].role is Role.LEADER and cluster.nodes["a"].term == term) is pre_vote


@pytest.mark.parametrize("check_quorum", [True, False])
def test_leader_lease_stops_an_up_to_date_node_that_lost_only_the_leader(
    check_quorum: bool,
) -> None:
    # c cannot hear a but hears b, and its log is as new as b's: PreVote alone would
    # let it win.  With CheckQuorum b, which hears a, ignores c's requests.
    cluster = Cluster(VOTERS_3, config=fast_config(check_quorum=check_quorum), seed=25)
    cluster.elect("a")
    cluster.propose("a", "k", "v")
    term = cluster.nodes["a"].term
    cluster.cut_links.update({("a", "c"), ("c", "a")})
    cluster.tick(times=5 * ELECTION_TICKS)
    assert (leader_of(cluster) == "a" and cluster.nodes["a"].term == term) is check_quorum


def test_a_follower_in_a_leader_lease_ignores_a_higher_term_vote_request() -> None:
    follower = make_node("b")
    follower.step(Heartbeat(term=2, from_id="a", to_id="b", commit=1))
    drain(follower)
    follower.step(
        RequestVote(
            term=3,
            from_id="c",
            to_id="b",
            last_index=9,
            last_term=2,
            pre_vote=False,
            transfer=False,
        )
    )
    assert (follower.term, follower.vote, drain(follower)) == (2, None, [])
    follower.step(  # unless the leader itself asked for the election
        RequestVote(
            term=3, from_id="c", to_id="b", last_index=9, last_term=2, pre_vote=False, transfer=True
        )
    )
    assert (follower.term, follower.vote) == (3, "c")


@pytest.mark.parametrize("check_quorum", [True, False])
def test_check_quorum_steps_down_an_isolated_leader(check_quorum: bool) -> None:
    config = fast_config(check_quorum=check_quorum)
    cluster = Cluster(VOTERS_3, config=config, seed=15)
    cluster.elect("a")
    cluster.isolate("a")
    # A new leader presumes its followers active, so the second check finds them silent.
    cluster.tick("a", times=2 * ELECTION_TICKS)
    assert (cluster.nodes["a"].role is Role.LEADER) is not check_quorum
    with pytest.raises(NotLeader) if check_quorum else contextlib.nullcontext():
        cluster.nodes["a"].propose(b"x")


def test_a_leader_that_hears_only_learners_steps_down() -> None:
    cluster = Cluster(VOTERS_3, ["l1", "l2"], seed=27)
    cluster.elect("a")
    cluster.partition({"a", "l1", "l2"}, {"b", "c"})
    cluster.tick("a", "l1", "l2", times=2 * ELECTION_TICKS)
    assert cluster.nodes["a"].role is Role.FOLLOWER  # learners do not count as a quorum


def test_leader_transfer_to_a_caught_up_follower() -> None:
    cluster = Cluster(VOTERS_3, seed=16)
    cluster.elect("a")
    term = cluster.nodes["a"].term
    cluster.nodes["a"].transfer_leadership("b")
    cluster.run()
    assert leader_of(cluster) == "b" and cluster.nodes["b"].term == term + 1
    assert cluster.nodes["a"].role is Role.FOLLOWER


def test_leader_transfer_to_a_lagging_follower_catches_it_up_first() -> None:
    cluster = Cluster(VOTERS_3, seed=17)
    cluster.elect("a")
    cluster.isolate("c")
    for i in range(12):
        cluster.propose("a", "k", str(i))
    cluster.heal()
    assert cluster.nodes["c"].log.last_index < cluster.nodes["a"].log.last_index
    cluster.nodes["a"].transfer_leadership("c")
    with pytest.raises(LeaderTransferInProgress):
        cluster.nodes["a"].propose(b"meanwhile")
    cluster.tick(times=2)
    assert leader_of(cluster) == "c"
    assert cluster.machines["c"].data["k"] == "11"


def test_leader_transfer_to_an_unreachable_voter_is_abandoned_after_an_election_timeout() -> None:
    cluster = Cluster(VOTERS_3, seed=18)
    cluster.elect("a")
    cluster.crash("c")
    cluster.nodes["a"].transfer_leadership("c")
    cluster.tick(times=ELECTION_TICKS)
    assert leader_of(cluster) == "a"
    cluster.propose("a", "k", "resumed")
    assert cluster.machines["b"].data["k"] == "resumed"


def test_one_at_a_time_membership_change_add_learner_promote_and_remove() -> None:
    cluster = Cluster(VOTERS_3, seed=19)
    cluster.elect("a")
    cluster.propose("a", "k", "before d")
    cluster.add_node("d")  # a new node: no state at all
    leader = cluster.nodes["a"]
    leader.propose_conf_change(ConfChange(kind=ConfChangeKind.ADD_LEARNER, node_id="d"))
    with pytest.raises(ConfChangeInProgress):
        leader.propose_conf_change(ConfChange(kind=ConfChangeKind.ADD_VOTER, node_id="d"))
    cluster.run()
    cluster.tick(times=2)
    assert cluster.nodes["d"].conf.learners == {"d"}
    assert cluster.machines["d"].data == {"k": "before d"}  # it got the snapshot, then entries
    leader.propose_conf_change(ConfChange(kind=ConfChangeKind.ADD_VOTER, node_id="d"))
    cluster.run()
    leader.propose_conf_change(ConfChange(kind=ConfChangeKind.REMOVE_NODE, node_id="c"))
    cluster.run()
    cluster.tick(times=2)
    expected = {"a", "b", "d"}
    assert all(cluster.nodes[n].conf.voters == expected for n in expected)
    with pytest.raises(NotLeader):
        cluster.nodes["c"].propose(b"x")
    cluster.crash("c")
    cluster.crash("b")
    index = cluster.propose("a", "k", "a and d")  # d's acknowledgement now counts
    assert cluster.nodes["a"].log.committed == index
    cluster.crash("d")
    index = cluster.propose("a", "k", "a alone")  # c's would not: it is gone
    cluster.restart("c")
    cluster.tick("a", "c", times=2)
    assert cluster.nodes["a"].log.committed < index
    cluster.restart("b")
    cluster.tick(times=2)
    assert cluster.nodes["a"].log.committed >= index


def test_a_new_leader_changes_membership_only_after_committing_an_entry_of_its_term() -> None:
    leader = make_node("a")
    make_leader(leader)  # its no-op is not acknowledged by anyone yet
    with pytest.raises(ConfChangeInProgress):
        leader.propose_conf_change(ConfChange(kind=ConfChangeKind.ADD_LEARNER, node_id="d"))


def test_snapshot_is_installed_on_a_lagging_follower() -> None:
    cluster = Cluster(VOTERS_3, seed=20)
    cluster.elect("a")
    cluster.crash("c")
    for i in range(30):
        cluster.propose("a", f"k{i % 5}", str(i))
    snapshot = cluster.compact("a")
    cluster.compact("b")
    cluster.restart("c")
    cluster.tick(times=3)
    snapshots = [m for m in cluster.delivered if isinstance(m, InstallSnapshot)]
    assert [(m.to_id, m.snapshot.index) for m in snapshots] == [("c", snapshot.index)]
    assert cluster.nodes["c"].log.snapshot.index == snapshot.index
    assert converged(cluster)
    cluster.propose("a", "k", "after the snapshot")
    assert cluster.machines["c"].data["k"] == "after the snapshot"


def test_learner_receives_committed_state_but_never_votes() -> None:
    cluster = Cluster(("a", "b"), ["l"], seed=21)
    cluster.elect("a")
    cluster.propose("a", "k", "v")
    assert cluster.machines["l"].data == {"k": "v"}
    cluster.isolate("l")
    cluster.tick(times=10 * ELECTION_TICKS)
    assert cluster.nodes["l"].role is Role.FOLLOWER  # it never campaigns
    cluster.heal()
    cluster.crash("a")  # b alone cannot win, even with the learner's help
    cluster.tick(times=10 * ELECTION_TICKS)
    assert cluster.leader() is None
    vote_requests = [m for m in cluster.delivered if isinstance(m, RequestVote)]
    assert vote_requests and all(m.to_id != "l" for m in vote_requests)
    cluster.restart("a")
    cluster.tick(times=3 * ELECTION_TICKS)
    assert leader_of(cluster) in {"a", "b"}
    assert cluster.nodes["l"].term == cluster.nodes["a"].term


def test_learner_acknowledgements_never_commit_an_entry() -> None:
    cluster = Cluster(VOTERS_3, ["l1", "l2", "l3"], seed=28)
    cluster.elect("a")
    cluster.crash("b")
    cluster.crash("c")
    index = cluster.propose("a", "k", "v")
    assert cluster.nodes["l1"].log.last_index >= index  # the learners hold it ...
    assert cluster.nodes["a"].log.committed < index  # ... which commits nothing


def test_leader_that_removes_itself_hands_leadership_over() -> None:
    cluster = Cluster(VOTERS_3, seed=22)
    cluster.elect("a")
    cluster.nodes["a"].propose_conf_change(ConfChange(kind=ConfChangeKind.REMOVE_NODE, node_id="a"))
    cluster.run()
    cluster.tick(times=2)
    new_leader = leader_of(cluster)
    assert new_leader in {"b", "c"}
    assert cluster.nodes[new_leader].conf.voters == {"b", "c"}
    cluster.propose(new_leader, "k", "without a")
    assert cluster.machines["b"].data["k"] == cluster.machines["c"].data["k"] == "without a"


def test_a_leader_that_logged_its_own_removal_takes_no_more_proposals() -> None:
    # Found by the simulator (seed 284): had it kept appending, then crashed after the
    # removal committed, its log would be newer than the remaining voter's, which
    # still needs its vote: no election could ever succeed again.
    cluster = Cluster(("a", "b"), seed=26)
    cluster.elect("a")
    cluster.crash("b")
    cluster.nodes["a"].propose_conf_change(ConfChange(kind=ConfChangeKind.ADD_LEARNER, node_id="a"))
    with pytest.raises(LeaderTransferInProgress):
        cluster.nodes["a"].propose(b"x")
    cluster.restart("b")
    cluster.tick(times=3 * ELECTION_TICKS)
    assert leader_of(cluster) == "b" and cluster.nodes["b"].conf.voters == {"b"}


def test_two_voters_survive_a_demotion_whose_commit_the_leader_forgot() -> None:
    # Voters {a, b}: a demotes b; b learns the commit, a crashes before persisting it.
    # a restarts believing {a, b} and needs b's vote; b must still answer.
    cluster = Cluster(("a", "b"), seed=23)
    cluster.elect("a")
    index = cluster.nodes["a"].propose_conf_change(
        ConfChange(kind=ConfChangeKind.ADD_LEARNER, node_id="b")
    )
    cluster.run()
    cluster.tick(times=1)
    assert cluster.nodes["b"].conf.voters == {"a"}
    store = cluster.stores["a"]
    store.hard_state = dataclasses.replace(store.hard_state, commit=index - 1)
    cluster.crash("a")
    cluster.restart("a")
    assert cluster.nodes["a"].conf.voters == {"a", "b"}
    cluster.tick(times=3 * ELECTION_TICKS)
    assert leader_of(cluster) == "a" and cluster.nodes["a"].conf.voters == {"a"}


def test_every_node_restarts_from_disk_with_its_committed_entries() -> None:
    cluster = Cluster(VOTERS_3, ["l"], seed=24)
    cluster.elect("a")
    for i in range(5):
        cluster.propose("a", "k", str(i))
    for node_id in list(cluster.nodes):
        cluster.crash(node_id)
    for node_id in list(cluster.nodes):
        cluster.restart(node_id)
    cluster.tick(times=3 * ELECTION_TICKS)
    assert all(m.data["k"] == "4" for m in cluster.machines.values())


def test_a_vote_is_persisted_in_the_same_ready_that_sends_it() -> None:
    voter = make_node("b")
    voter.step(
        RequestVote(
            term=2,
            from_id="a",
            to_id="b",
            last_index=1,
            last_term=1,
            pre_vote=False,
            transfer=False,
        )
    )
    ready = voter.ready()
    [reply] = of_type(list(ready.messages), VoteResponse)
    assert reply.granted and ready.hard_state is not None
    assert (ready.hard_state.term, ready.hard_state.vote) == (2, "a")


def test_appended_entries_are_persisted_in_the_same_ready_that_acknowledges_them() -> None:
    leader = make_node("a")
    appends = of_type(make_leader(leader), Append)
    follower = make_node("b")
    follower.step(next(m for m in appends if m.to_id == "b"))
    ready = follower.ready()
    [reply] = of_type(list(ready.messages), AppendResponse)
    assert ready.entries and ready.entries[-1].index == reply.index == leader.log.last_index


def test_elections_are_counted_without_prevote_rounds() -> None:
    node = make_node("a")
    assert (node.elections_started, node.elections_won) == (0, 0)
    node.start_election(transfer=False)  # PreVote first: no election yet
    assert node.role is Role.PRE_CANDIDATE and node.elections_started == 0
    for voter in ("b", "c"):
        if node.role is Role.PRE_CANDIDATE:
            grant(node, voter, pre_vote=True)
    assert node.role is Role.CANDIDATE and node.elections_started == 1
    grant(node, "b", pre_vote=False)
    assert node.role is Role.LEADER and (node.elections_started, node.elections_won) == (1, 1)
