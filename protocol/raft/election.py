"""Leader election with PreVote, leader leases and leadership transfer (Raft §5.2, §5.4.1).

Theory of operation
-------------------
A voter of the committed configuration that hears no leader for its randomized
election timeout campaigns:

1. PreVote (``pre_vote=True``): it asks every voter "would you vote for me in
   ``term + 1``?" without changing its own term.  A voter says yes if it would grant
   a real vote: the candidate's log is at least as up to date as its own (§5.4.1) and
   it has not heard from a leader within an election timeout.  Nothing is persisted.
2. With a quorum of yeses it campaigns for real: term + 1, votes for itself, asks
   again with ``pre_vote=False``.  A voter grants at most one vote per term, first
   come, first served, and persists it before answering.
3. A quorum of grants makes it leader; a quorum of refusals sends it back to follower;
   otherwise the next timeout starts over (randomized, so split votes are rare).

A node cut off from the majority therefore never gets past step 1 and never inflates
its term, so when it returns it cannot depose a healthy leader (Raft thesis §9.6).

Leader lease (with ``check_quorum``): a node that heard from a leader less than
``election_ticks`` ago ignores vote requests of a higher term, unless the request is
a leadership transfer.  The leader itself steps down when a quorum has been silent
for as long (``replication.py``), so no node keeps acting as leader without one.

Leadership transfer: the leader brings the target up to date and sends it
``TimeoutNow``; the target campaigns at once, skipping PreVote, with ``transfer`` set.
"""

from __future__ import annotations

from protocol.raft.conf import VoteResult
from protocol.raft.core import NodeCore
from protocol.raft.messages import RequestVote, TimeoutNow, VoteResponse
from protocol.raft.roles import Role, Trigger


class Election(NodeCore):
    """The election half of a Raft node."""

    def tick_election(self) -> None:
        """Follower, pre-candidate, candidate: count towards the election timeout."""
        self.election_elapsed += 1
        if self.promotable() and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self.start_election(transfer=False)

    def in_lease(self) -> bool:
        """True while a leader was heard within an election timeout (CheckQuorum)."""
        return (
            self.config.check_quorum
            and self.leader_id is not None
            and self.election_elapsed < self.config.election_ticks
        )

    def start_election(self, *, transfer: bool) -> None:
        """Campaign: PreVote first unless it is off or this is a transfer."""
        if self.role is Role.LEADER or not self.promotable():
            return
        if transfer:
            self._campaign(pre_vote=False, transfer=True, trigger=Trigger.TIMEOUT_NOW)
        elif self.config.pre_vote:
            self._campaign(pre_vote=True, transfer=False, trigger=Trigger.ELECTION_TIMEOUT)
        else:
            self._campaign(
                pre_vote=False, transfer=False, trigger=Trigger.ELECTION_TIMEOUT_NO_PRE_VOTE
            )

    def _campaign(self, *, pre_vote: bool, transfer: bool, trigger: Trigger) -> None:
        if pre_vote:
            self.become_pre_candidate()
            term = self.term + 1
        else:
            self.become_candidate(trigger)
            term = self.term
        self.votes[self.id] = True
        if self.conf.vote_result(self.votes) is VoteResult.WON:
            self._won(pre_vote=pre_vote)
            return
        for voter in sorted(self.conf.voters - {self.id}):
            self.send(
                RequestVote(
                    term=term,
                    from_id=self.id,
                    to_id=voter,
                    last_index=self.log.last_index,
                    last_term=self.log.last_term,
                    pre_vote=pre_vote,
                    transfer=transfer,
                )
            )

    def _won(self, *, pre_vote: bool) -> None:
        if pre_vote:
            self._campaign(pre_vote=False, transfer=False, trigger=Trigger.PRE_VOTE_WON)
        else:
            self.become_leader()
            self.maybe_commit()  # a single voter commits its no-op at once
            self.broadcast_append()

    def handle_request_vote(self, message: RequestVote) -> None:
        """Grant or refuse a (pre-)vote; the term was already reconciled."""
        may_grant = (
            self.vote == message.from_id
            or (self.vote is None and self.leader_id is None)
            or (message.pre_vote and message.term > self.term)
        )
        granted = may_grant and self.log.is_up_to_date(message.last_index, message.last_term)
        self.send(
            VoteResponse(
                # A granted pre-vote answers in the future term it was asked about.
                term=message.term if granted else self.term,
                from_id=self.id,
                to_id=message.from_id,
                pre_vote=message.pre_vote,
                granted=granted,
            )
        )
        if granted and not message.pre_vote:
            self.election_elapsed = 0
            self.vote = message.from_id

    def handle_vote_response(self, message: VoteResponse) -> None:
        """Count an answer if it belongs to the round this node is running."""
        if self.role is Role.PRE_CANDIDATE and message.pre_vote:
            expected_term = self.term + 1 if message.granted else self.term
        elif self.role is Role.CANDIDATE and not message.pre_vote:
            expected_term = self.term
        else:
            return
        if message.term != expected_term or message.from_id not in self.conf.voters:
            return
        self.votes.setdefault(message.from_id, message.granted)
        result = self.conf.vote_result(self.votes)
        if result is VoteResult.WON:
            self._won(pre_vote=message.pre_vote)
        elif result is VoteResult.LOST:
            self.become_follower(self.term, None, Trigger.ELECTION_LOST)

    def handle_timeout_now(self, message: TimeoutNow) -> None:
        """The leader asks this node to take over: campaign now (followers only)."""
        if self.role is Role.FOLLOWER:
            self.start_election(transfer=True)
