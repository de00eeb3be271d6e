"""The state every Raft node keeps, and the role changes that reset it.

Theory of operation
-------------------
:class:`NodeCore` holds a node's state and the transitions between roles; the
election rules live in ``election.py``, replication in ``replication.py`` and the
public API in ``node.py``, each a layer over this class.

Persistent state (``term``, ``vote``, the log) survives restarts through ``Ready``;
everything else starts afresh as a follower with no leader known.

Configuration takes effect when committed
-----------------------------------------
``conf`` is the configuration of the *committed* prefix of the log: a conf-change
entry changes it when the node learns the entry is committed (the way etcd applies
changes).  A leader proposes a change only once the previous one and an entry of its
own term are committed (Ongaro's fix for one-at-a-time changes), so the
configurations any two nodes act on are equal or neighbours in one chain of
single-voter changes, whose majorities overlap.

Who campaigns: only a voter of its own committed configuration, so a learner never
does.  Who is asked and counted: only the voters of the candidate's committed
configuration, so a learner's vote is never requested or counted by a node that
knows it is a learner.  A node *answers* every vote request by the usual rules
(etcd does the same): the only candidates that ask a learner are those whose
configuration predates its demotion (or postdates a promotion it has not yet
learned), and refusing them can deadlock the cluster for good.  Example: voters
{L, X}; L demotes X, X learns the commit, L crashes before persisting it.  L
restarts with {L, X} and needs X's vote; a strictly silent X would leave no node
able to win an election ever again.

A leader that logs a change unseating itself takes no more proposals from then on.
Once the change commits it keeps leading (exempt from CheckQuorum) and hands
leadership to the most caught-up voter with ``TimeoutNow``, retrying every election
timeout, until a leader of a higher term takes over.  Both rules exist because the
remaining voters may not have learned the commit yet and so still need this node's
vote, which it gives only to a log as new as its own: had it stepped down at once,
or kept appending past its removal and then crashed, nobody could win an election.
"""

from __future__ import annotations

from random import Random

from protocol.raft.conf import ConfChange, ConfState, check_node_id
from protocol.raft.config import RaftConfig
from protocol.raft.entries import Entry, EntryKind, HardState, PersistentState
from protocol.raft.log import RaftLog
from protocol.raft.messages import Message
from protocol.raft.progress import Progress
from protocol.raft.ready import Ready, SoftState
from protocol.raft.roles import Role, Trigger, next_role


class NodeCore:
    """State and role transitions of one Raft node.  Attributes are read-only outside."""

    def __init__(
        self,
        node_id: str,
        config: RaftConfig,
        storage_state: PersistentState | None,
        rng: Random,
    ) -> None:
        check_node_id("node_id", node_id)
        self.id = node_id
        self.config = config
        self._rng = rng
        self.log = RaftLog(storage_state)
        hard = storage_state.hard_state if storage_state else HardState(term=0, vote=None, commit=0)
        self.term = hard.term
        """Current term (persisted)."""
        self.vote: str | None = hard.vote
        """Whom this node voted for in ``term`` (persisted)."""
        self.conf = self.log.snapshot.conf
        """Configuration of the committed log prefix (see the module docstring)."""
        self._apply_conf_changes(self.log.slice(self.log.first_index, self.log.committed + 1))
        self.role = Role.FOLLOWER
        self.leader_id: str | None = None
        """Leader of ``term`` as far as this node knows."""
        self.election_elapsed = 0
        """Ticks since the leader was last heard (leader: since the last quorum check)."""
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = 0
        self.progress: dict[str, Progress] = {}
        """Leader only: what each other member holds."""
        self.votes: dict[str, bool] = {}
        """(Pre-)candidate only: answers received, this node included."""
        self.elections_started = 0
        """Elections this node started since it was built (PreVote rounds not counted)."""
        self.elections_won = 0
        """Of those, the ones it won (it became leader)."""
        self.transferee: str | None = None
        """Leader only: the voter leadership is being handed to."""
        self.pending_conf_index = 0
        """Leader only: no new conf change until the commit index reaches this."""
        self.uncommitted_bytes = 0
        """Leader only: proposal bytes appended in this term and not yet committed."""
        self._messages: list[Message] = []
        self._prev_hard_state = hard
        self._prev_soft_state = SoftState(leader_id=None, role=Role.FOLLOWER)
        self._outstanding: Ready | None = None
        self._reset_election_timeout()

    # ------------------------------------------------------------ derived facts

    def hard_state(self) -> HardState:
        return HardState(term=self.term, vote=self.vote, commit=self.log.committed)

    def soft_state(self) -> SoftState:
        return SoftState(leader_id=self.leader_id, role=self.role)

    def promotable(self) -> bool:
        """May this node campaign?  Only voters of the committed configuration."""
        return self.id in self.conf.voters

    def leaving(self) -> bool:
        """Leader: has it logged (maybe not yet committed) a change that unseats it?

        Such a leader takes no more proposals, so once the change commits its log
        holds nothing the remaining voters lack, and they can elect one of their own
        even if it crashes before handing over.
        """
        conf = self.conf
        if self.pending_conf_index > self.log.committed:
            # A leader's uncommitted conf changes all sit at or below pending_conf_index.
            high = min(self.pending_conf_index, self.log.last_index)
            for entry in self.log.slice(self.log.committed + 1, high + 1):
                if entry.kind is EntryKind.CONF_CHANGE:
                    conf = conf.apply(ConfChange.from_bytes(entry.data))
        return self.id not in conf.voters

    def conf_at(self, index: int) -> ConfState:
        """The configuration committed at ``index`` (held in the log, >= snapshot)."""
        conf = self.log.snapshot.conf
        for entry in self.log.slice(self.log.first_index, index + 1):
            if entry.kind is EntryKind.CONF_CHANGE:
                conf = conf.apply(ConfChange.from_bytes(entry.data))
        return conf

    # ------------------------------------------------------------ role changes

    def _transition(self, trigger: Trigger) -> None:
        self.role = next_role(self.role, trigger)

    def _reset_election_timeout(self) -> None:
        ticks = self.config.election_ticks
        self.randomized_election_timeout = ticks + self._rng.randrange(ticks)

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
        self.leader_id = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._reset_election_timeout()
        self.progress = {}
        self.votes = {}
        self.transferee = None
        self.pending_conf_index = 0
        self.uncommitted_bytes = 0

    def become_follower(self, term: int, leader_id: str | None, trigger: Trigger) -> None:
        self._transition(trigger)
        self._reset(term)
        self.leader_id = leader_id

    def become_pre_candidate(self) -> None:
        """PreVote round: term and vote stay as they are (Raft thesis §9.6)."""
        self._transition(Trigger.ELECTION_TIMEOUT)
        self.votes = {}
        self.leader_id = None
        self.progress = {}

    def become_candidate(self, trigger: Trigger) -> None:
        self._transition(trigger)
        self._reset(self.term + 1)
        self.vote = self.id
        self.elections_started += 1

    def become_leader(self) -> None:
        self._transition(Trigger.VOTE_WON)
        self.elections_won += 1
        self._reset(self.term)
        self.leader_id = self.id
        self._sync_progress()
        # An entry of our own term: committing it commits everything before it
        # (Raft §5.4.2), and conf changes wait for it (one-at-a-time safety).
        self.log.append(
            [Entry(index=self.log.last_index + 1, term=self.term, kind=EntryKind.NORMAL, data=b"")]
        )
        self.pending_conf_index = self.log.last_index

    def _sync_progress(self) -> None:
        """Leader: one Progress per member other than this node, new ones probing."""
        members = self.conf.members - {self.id}
        for node_id in list(self.progress):
            if node_id not in members:
                del self.progress[node_id]
        for node_id in sorted(members - self.progress.keys()):
            self.progress[node_id] = Progress(
                next_index=self.log.last_index + 1,
                inflight_max=self.config.inflight_appends_max,
            )

    # ------------------------------------------------------------ commit

    def commit_to(self, index: int) -> bool:
        """Raise the commit index and apply the conf changes it commits."""
        old = self.log.committed
        if not self.log.commit_to(index):
            return False
        committed = self.log.slice(old + 1, index + 1)
        if self.role is Role.LEADER:
            done = sum(len(entry.data) for entry in committed)
            self.uncommitted_bytes = max(0, self.uncommitted_bytes - done)
        if self._apply_conf_changes(committed):
            self._conf_changed()
        return True

    def _apply_conf_changes(self, entries: list[Entry]) -> bool:
        changed = False
        for entry in entries:
            if entry.kind is EntryKind.CONF_CHANGE:
                self.conf = self.conf.apply(ConfChange.from_bytes(entry.data))
                changed = True
        return changed

    def _conf_changed(self) -> None:
        if self.role is not Role.LEADER:
            return
        self._sync_progress()
        if self.transferee is not None and self.transferee not in self.conf.voters:
            self.transferee = None
        if self.id not in self.conf.voters:
            self.hand_over()
        elif self.maybe_commit():
            self.broadcast_append()

    def maybe_commit(self) -> bool:
        """Leader: commit what a quorum of voters holds, if it is of this term."""
        match = {node_id: progress.match for node_id, progress in self.progress.items()}
        match[self.id] = self.log.last_index
        index = self.conf.committed_index(match)
        if index > self.log.committed and self.log.term(index) == self.term:
            return self.commit_to(index)
        return False

    # ------------------------------------------------------------ output

    def send(self, message: Message) -> None:
        self._messages.append(message)

    def broadcast_append(self) -> None:
        """Overridden in ``replication.py``."""
        raise NotImplementedError

    def hand_over(self) -> None:
        """Overridden in ``replication.py``."""
        raise NotImplementedError
