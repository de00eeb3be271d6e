"""Randomized fault simulation of whole Raft clusters, many seeds (TigerBeetle VOPR style).

Each seed builds a cluster (3 or 5 voters, 0-2 learners) and runs it through drops,
duplicates, reordering, partitions, crash-restarts that lose unpersisted state,
membership changes, leadership transfers and compactions, checking Raft's safety
properties after every step (``protocol/raft/invariants.py``); then heals everything
and requires the cluster to converge.

    VRAMANCER_RAFT_SEEDS=5000 pytest tests/raft/test_raft_random.py   # more seeds
    VRAMANCER_RAFT_SEED=1234 pytest tests/raft/test_raft_random.py    # replay one

A failure names its seed: ``reproduce with VRAMANCER_RAFT_SEED=<seed>``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import pytest

from protocol.raft.election import Election
from protocol.raft.invariants import InvariantViolation
from protocol.raft.messages import RequestVote
from protocol.raft.simulation import SEED_ENV, Simulation

SEEDS_ENV = "VRAMANCER_RAFT_SEEDS"
SEEDS_DEFAULT = 500
FAULT_TICKS = 300
"""Ticks of the safety phase: about 25 election timeouts of the simulated config."""
LIVENESS_TICKS_MAX = 200
"""Ticks the healed cluster gets to elect a leader and converge."""
MUTANT_SEEDS_MAX = 60
"""Seeds a deliberately broken core gets before the simulator must have caught it."""


def seeds() -> list[int]:
    one = os.environ.get(SEED_ENV)
    if one:
        return [int(one)]
    return list(range(int(os.environ.get(SEEDS_ENV, str(SEEDS_DEFAULT)))))


@pytest.mark.parametrize("seed", seeds())
def test_raft_stays_safe_under_random_faults_and_recovers_once_healed(seed: int) -> None:
    Simulation(seed).run(fault_ticks=FAULT_TICKS, liveness_ticks_max=LIVENESS_TICKS_MAX)


def test_the_simulation_exercises_what_it_claims_to() -> None:
    results = [Simulation(seed).run(FAULT_TICKS, LIVENESS_TICKS_MAX) for seed in range(25)]
    assert {(r.voters, r.learners) for r in results} >= {(3, 0), (5, 0), (3, 1), (5, 2)}
    assert sum(r.crashes for r in results) > 50
    assert sum(r.leaders > 2 for r in results) > 10
    assert sum(r.snapshots_installed for r in results) > 10
    assert sum(r.conf_changes for r in results) > 10
    assert all(r.acknowledged > 0 for r in results)


def test_a_failure_names_the_seed_that_reproduces_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Simulation, "_converge", lambda self, ticks_max: None)

    def fail(self: Simulation) -> None:
        raise InvariantViolation("injected")

    monkeypatch.setattr(Simulation, "_heal_everything", fail)
    with pytest.raises(InvariantViolation, match=f"reproduce with {SEED_ENV}=77"):
        Simulation(77).run(fault_ticks=3, liveness_ticks_max=1)


def first_failing_seed() -> Iterator[int]:
    for seed in range(MUTANT_SEEDS_MAX):
        try:
            Simulation(seed).run(FAULT_TICKS, LIVENESS_TICKS_MAX)
        except InvariantViolation:
            yield seed
            return


def test_a_voter_that_votes_twice_in_a_term_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Election.handle_request_vote

    def forgetful(self: Election, message: RequestVote) -> None:
        self.vote = None  # forget whom we voted for: grants a second vote in the term
        original(self, message)

    monkeypatch.setattr(Election, "handle_request_vote", forgetful)
    assert list(first_failing_seed()), "a double vote went unnoticed"


def test_a_disk_that_loses_acknowledged_entries_in_a_crash_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = Simulation._crash

    def crash_losing_the_tail(self: Simulation, node_id: str) -> None:
        original(self, node_id)
        store = self.nodes[node_id].store
        if store.entries:  # the last entry was acknowledged but never reached the platter
            store.entries.pop()
            last = store.snapshot.index + len(store.entries)
            commit = min(store.hard_state.commit, last)
            store.hard_state = dataclasses.replace(store.hard_state, commit=commit)

    monkeypatch.setattr(Simulation, "_crash", crash_losing_the_tail)
    assert list(first_failing_seed()), "lost entries went unnoticed"
