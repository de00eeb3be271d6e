"""The member table: applies rumours to what we believe (memberlist state.go).

Theory of operation
-------------------
The table holds one entry per known member: its newest record, its state and when
that state last changed.  Rumours arrive as four kinds of input, each applied with
the rules of ``state.py``:

* :meth:`MemberTable.alive` (an ALIVE message or an alive push-pull entry): the
  record's *data* is taken if its ``version`` is higher; its *liveness* counts only
  if its ``incarnation`` is higher.  New members are added.
* :meth:`MemberTable.suspect`: starts a Lifeguard :class:`Suspicion`, or confirms a
  running one (a new accuser shrinks the timer and is re-gossiped).
* :meth:`MemberTable.dead`: DEAD, or LEFT when the member declared itself.
* :meth:`MemberTable.merge_push_pull`: a peer's full state; like memberlist, a member
  the peer believes dead is only *suspected* here, so it gets a chance to refute;
  unlike memberlist, such hearsay never counts as a Lifeguard confirmation.

Whatever changed our view is queued for gossip (named by the member, replacing the
older rumour) and reported as an event.  Rumours about the local member are never
applied: a suspicion or death is *refuted* (incarnation bumped past the accusation,
health score +1), and a different record of ourselves with a version or incarnation
at least ours (we restarted and forgot) is out-voted by bumping both counters.

Warm start (simulations): :class:`WarmTable` is one converged table shared by every
core of a simulated cluster.  A table seeded from it reads through to the shared
entries and copies one into its own dict only when it changes it (copy on write), so
N cores cost O(N) shared memory plus what each of them changed, not O(N²).  A member
forgotten while it is still in the shared table leaves a tombstone (``_gone``).

Bounds: :data:`MEMBERS_MAX` entries (the oldest dead or left member is evicted
first, otherwise newcomers are dropped and counted) and :data:`EVENTS_MAX` pending
events (the oldest are dropped and counted if the caller never drains them).
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Callable, Iterable

from protocol.membership.awareness import REFUTED_DELTA, Awareness
from protocol.membership.broadcast import BroadcastQueue
from protocol.membership.codec import PUSH_PULL_MEMBERS_MAX, encode_part
from protocol.membership.events import (
    MemberAlive,
    MemberDead,
    MemberJoined,
    MemberLeft,
    MembershipEvent,
    MemberSuspected,
    MemberUpdated,
)
from protocol.membership.messages import (
    Alive,
    Dead,
    Message,
    PushPullEntry,
    SharedMembers,
    Suspect,
)
from protocol.membership.record import MemberRecord, bumped
from protocol.membership.state import LIVE_STATES, Claim, Member, MemberState, next_state
from protocol.membership.suspicion import (
    Suspicion,
    expected_confirmations,
    suspicion_timeout_s,
)
from protocol.membership.timing import MembershipTiming

MEMBERS_MAX = PUSH_PULL_MEMBERS_MAX
"""Members tracked, the local one included; one push-pull must be able to carry all."""
EVENTS_MAX = 65_536
"""Undrained events kept; older ones are dropped (and counted) beyond this."""
DEAD_MEMBER_RETENTION_S = 24 * 3600.0
"""Dead and left members are forgotten after this long (serf's reconnect timeout).
Remembering them lets a restarted member learn that it was declared dead and
refute with a higher incarnation."""


@dataclasses.dataclass(slots=True)
class _Entry:
    record: MemberRecord
    state: MemberState
    state_change_s: float


class WarmTable:
    """A converged member table, shared read-only by warm-started cores (see above)."""

    __slots__ = ("entries", "ids", "push_pull")

    def __init__(self, records: Iterable[MemberRecord], now: float) -> None:
        self.entries: dict[str, _Entry] = {}
        for record in records:
            if record.node_id not in self.entries:
                self.entries[record.node_id] = _Entry(record, MemberState.ALIVE, now)
        if len(self.entries) > MEMBERS_MAX:
            raise ValueError(f"a warm table holds at most {MEMBERS_MAX} members")
        self.ids: tuple[str, ...] = tuple(self.entries)
        """Every member id, in the order given."""
        self.push_pull: dict[str, PushPullEntry] = {
            node_id: PushPullEntry(record=e.record, state=e.state)
            for node_id, e in self.entries.items()
        }
        """The entries as a push-pull carries them (the base of ``SharedMembers``)."""

    def __len__(self) -> int:
        return len(self.entries)


class MemberTable:
    """What the local node believes about every member, itself included."""

    def __init__(
        self,
        *,
        local: MemberRecord,
        timing: MembershipTiming,
        awareness: Awareness,
        broadcasts: BroadcastQueue,
        on_added: Callable[[str], None],
        now: float,
        on_forgotten: Callable[[str], None] = lambda node_id: None,
    ) -> None:
        self.local_id = local.node_id
        self._timing = timing
        self._awareness = awareness
        self._broadcasts = broadcasts
        self._on_added = on_added
        self._on_forgotten = on_forgotten
        self._entries: dict[str, _Entry] = {local.node_id: _Entry(local, MemberState.ALIVE, now)}
        """Our own entries (they hide the warm table's)."""
        self._gone: set[str] = set()
        """Tombstones: members of the warm table we have forgotten."""
        self._warm: dict[str, _Entry] = {}
        """The shared warm table's entries (never mutated here), or empty."""
        self._warm_push_pull: dict[str, PushPullEntry] = {}
        """The same, as push-pull entries (see ``push_pull_entries``)."""
        self._size = 1
        self._live_count = 1
        self._down: dict[str, MemberState] = {}
        """Members DEAD or LEFT right now: the reconnect timer picks among the dead, the
        reaper and eviction look only here (never a scan of the whole table)."""
        self._suspicions: dict[str, Suspicion] = {}
        self._events: deque[MembershipEvent] = deque()
        self.left = False
        """True once the local member left; rumours about it are then ignored."""
        self.members_dropped = 0
        self.events_dropped = 0
        self.refutations = 0

    # ----------------------------------------------------------------- queries

    @property
    def local(self) -> MemberRecord:
        return self._local_entry().record

    @property
    def dead_ids(self) -> list[str]:
        """Members currently DEAD (not LEFT), from the DEAD/LEFT index (no table scan)."""
        return [node_id for node_id, state in self._down.items() if state is MemberState.DEAD]

    @property
    def live_count(self) -> int:
        """Members alive or suspect, the local one included: the cluster size estimate."""
        return self._live_count

    def __len__(self) -> int:
        return self._size

    def get(self, node_id: str) -> Member | None:
        entry = self._get(node_id)
        if entry is None:
            return None
        return Member(record=entry.record, state=entry.state, state_change_s=entry.state_change_s)

    def state_of(self, node_id: str) -> MemberState | None:
        entry = self._get(node_id)
        return None if entry is None else entry.state

    def record_of(self, node_id: str) -> MemberRecord | None:
        entry = self._get(node_id)
        return None if entry is None else entry.record

    def state_change_s(self, node_id: str) -> float:
        entry = self._get(node_id)
        if entry is None:
            raise KeyError(node_id)
        return entry.state_change_s

    def ids(self) -> Iterable[str]:
        return [node_id for node_id, _ in self._items()]

    def snapshot(self) -> tuple[Member, ...]:
        return tuple(
            Member(record=e.record, state=e.state, state_change_s=e.state_change_s)
            for _, e in sorted(self._items(), key=lambda item: item[0])
        )

    def push_pull_entries(self) -> tuple[PushPullEntry, ...] | SharedMembers:
        """Every entry, for a push-pull; O(own changes) on a warm-started table."""
        if not self._warm:
            return tuple(PushPullEntry(record=e.record, state=e.state) for _, e in self._items())
        warm = self._warm
        return SharedMembers(
            self._warm_push_pull,
            tuple(PushPullEntry(record=e.record, state=e.state) for e in self._entries.values()),
            frozenset([node_id for node_id in self._entries if node_id in warm]) | self._gone,
        )

    def next_suspicion_deadline_s(self) -> float | None:
        if not self._suspicions:
            return None
        earliest_s = math.inf
        for suspicion in self._suspicions.values():
            if suspicion.deadline_s < earliest_s:
                earliest_s = suspicion.deadline_s
        return earliest_s

    def drain_events(self) -> list[MembershipEvent]:
        if not self._events:
            return []
        events = list(self._events)
        self._events.clear()
        return events

    # ------------------------------------------------------------------ claims

    def alive(self, record: MemberRecord, now: float) -> None:
        """Apply an ALIVE claim carrying ``record``."""
        self._apply_record(record, now, claims_alive=True)

    def suspect(
        self, node_id: str, incarnation: int, from_id: str, now: float, *, hearsay: bool = False
    ) -> None:
        """Apply ``from_id``'s suspicion of ``node_id`` at ``incarnation``.

        ``hearsay`` marks a suspicion only seen in a peer's full state: it starts our
        timer if none runs, but is neither a Lifeguard confirmation nor re-gossiped.
        """
        entry = self._get(node_id)
        if entry is None or incarnation < entry.record.incarnation:
            return
        suspicion = self._suspicions.get(node_id)
        if suspicion is not None:
            if not hearsay and suspicion.confirm(from_id):
                self._gossip(
                    node_id, Suspect(node_id=node_id, incarnation=incarnation, from_id=from_id)
                )
            return
        target = next_state(entry.state, entry.record.incarnation, Claim.SUSPECT, incarnation)
        if target is None:
            return
        if node_id == self.local_id:
            self._refute(incarnation, None)
            return
        if not hearsay:
            accusation = Suspect(node_id=node_id, incarnation=incarnation, from_id=from_id)
            self._gossip(node_id, accusation)
        entry = self._own(node_id, entry)
        self._raise_incarnation(entry, incarnation)
        self._set_state(entry, target, now)
        members = self._live_count
        min_s = suspicion_timeout_s(
            self._timing.suspicion_mult, members, self._timing.probe_interval_s
        )
        self._suspicions[node_id] = Suspicion(
            from_id=from_id,
            k=expected_confirmations(self._timing.suspicion_mult, members),
            min_s=min_s,
            max_s=self._timing.suspicion_max_timeout_mult * min_s,
            now=now,
        )
        self._emit(MemberSuspected(node_id=node_id, incarnation=incarnation, suspected_by=from_id))

    def dead(self, node_id: str, incarnation: int, from_id: str, now: float) -> None:
        """Apply ``from_id``'s declaration that ``node_id`` died (or left, if itself)."""
        entry = self._get(node_id)
        if entry is None or incarnation < entry.record.incarnation:
            return
        self._suspicions.pop(node_id, None)
        claim = Claim.LEFT if from_id == node_id else Claim.DEAD
        target = next_state(entry.state, entry.record.incarnation, claim, incarnation)
        if target is None:
            return
        if node_id == self.local_id:
            self._refute(incarnation, None)  # leaving is done by leave(), never by rumour
            return
        self._gossip(node_id, Dead(node_id=node_id, incarnation=incarnation, from_id=from_id))
        entry = self._own(node_id, entry)
        self._raise_incarnation(entry, incarnation)
        self._set_state(entry, target, now)
        if target is MemberState.LEFT:
            self._emit(MemberLeft(node_id=node_id, incarnation=incarnation))
        else:
            self._emit(MemberDead(node_id=node_id, incarnation=incarnation, declared_by=from_id))

    def merge_push_pull(self, entries: Iterable[PushPullEntry], now: float) -> None:
        """Merge a peer's full state (memberlist mergeState)."""
        if isinstance(entries, SharedMembers) and entries.base is self._warm_push_pull:
            entries = self._news_in(entries)
        for item in entries:
            record = item.record
            known = self._get(record.node_id)
            if known is not None and known.record is record and known.state is item.state:
                continue  # the very record we hold (in-process simulations): nothing new
            if item.state is MemberState.ALIVE:
                self.alive(record, now)
                continue
            self._apply_record(record, now, claims_alive=False)
            if item.state is MemberState.LEFT:
                self.dead(record.node_id, record.incarnation, record.node_id, now)
            else:
                # A death we did not witness is only a suspicion here, so the member
                # gets a chance to refute (memberlist).  Unlike memberlist, it is not
                # counted as an independent confirmation: anti-entropy repeats one
                # accusation to everyone, and counting each repetition would shrink
                # Lifeguard's timer to its minimum without any new evidence.
                self.suspect(record.node_id, record.incarnation, self.local_id, now, hearsay=True)

    def _news_in(self, shared: SharedMembers) -> list[PushPullEntry]:
        """What in ``shared`` can change this table, which shares its base: the sender's
        changes, base entries of members we forgot, and the base's record of us (our
        local record need not be the base's).  Every other base entry is a no-op here:
        it is ALIVE at the base's incarnation and version, and whatever we hold for that
        member descends from it (neither counter ever goes down)."""
        news = list(shared.changed)
        hidden, base = shared.hidden, shared.base
        for node_id in (self.local_id, *self._gone):
            if node_id in base and node_id not in hidden:
                news.append(base[node_id])
        return news

    def seed_warm(self, warm: WarmTable) -> None:
        """Read through to ``warm``'s ALIVE members, silently: no event, no broadcast.

        Only on a table that knows nothing but itself (a warm start); the caller adds
        the members to its probe order.
        """
        if self._size != 1 or self._warm:
            raise ValueError("a warm table can only seed a fresh member table")
        self._warm = warm.entries
        self._warm_push_pull = warm.push_pull
        others = len(warm.entries) - int(self.local_id in warm.entries)
        self._size += others
        self._live_count += others

    def expire_suspicions(self, now: float) -> None:
        """Declare dead every suspect whose Lifeguard timer ran out."""
        overdue = [n for n, s in self._suspicions.items() if s.deadline_s <= now]
        for node_id in overdue:
            entry = self._get(node_id)
            self._suspicions.pop(node_id)
            if entry is not None and entry.state is MemberState.SUSPECT:
                self.dead(node_id, entry.record.incarnation, self.local_id, now)

    # ------------------------------------------------------------ local member

    def update_local(self, record: MemberRecord) -> None:
        """Publish a new local record (the caller bumped its version)."""
        self._local_entry().record = record
        self._gossip(self.local_id, Alive(record=record))

    def leave(self, now: float) -> None:
        """Mark the local member as left and gossip its farewell."""
        if self.left:
            return
        self.left = True
        entry = self._local_entry()
        self._set_state(entry, MemberState.LEFT, now)
        incarnation = entry.record.incarnation
        farewell = Dead(node_id=self.local_id, incarnation=incarnation, from_id=self.local_id)
        self._gossip(self.local_id, farewell)

    def reap(self, now: float) -> list[str]:
        """Forget members dead or left for longer than the retention; return their ids."""
        gone = [
            node_id
            for node_id in self._down
            if node_id != self.local_id
            and now - self._entries[node_id].state_change_s > DEAD_MEMBER_RETENTION_S
        ]
        for node_id in gone:
            self._forget(node_id)
        return gone

    # ----------------------------------------------------------------- helpers

    def _apply_record(self, record: MemberRecord, now: float, *, claims_alive: bool) -> None:
        node_id = record.node_id
        if node_id == self.local_id:
            self._check_own_record(record)
            return
        entry = self._get(node_id)
        if entry is None:
            if claims_alive:
                self._add(record, now)
            return
        old = entry.record
        data_newer = record.version > old.version
        target = None
        if claims_alive:
            target = next_state(entry.state, old.incarnation, Claim.ALIVE, record.incarnation)
        if not data_newer and target is None:
            return
        merged = record if data_newer else old
        incarnation = max(record.incarnation, old.incarnation)
        if merged.incarnation != incarnation:
            merged = dataclasses.replace(merged, incarnation=incarnation)
        entry = self._own(node_id, entry)
        entry.record = merged
        old_state = entry.state
        if target is not None:
            self._suspicions.pop(node_id, None)
            self._set_state(entry, target, now)
            self._gossip(node_id, Alive(record=merged))
        elif entry.state is MemberState.ALIVE:
            self._gossip(node_id, Alive(record=merged))
        if target is not None and old_state not in LIVE_STATES:
            self._emit(MemberJoined(record=merged))
            return
        if target is not None and old_state is MemberState.SUSPECT:
            self._emit(MemberAlive(node_id=node_id, incarnation=incarnation))
        if data_newer:
            self._emit(MemberUpdated(record=merged))

    def _add(self, record: MemberRecord, now: float) -> None:
        if self._size >= MEMBERS_MAX and not self._evict_one():
            self.members_dropped += 1
            return
        self._entries[record.node_id] = _Entry(record, MemberState.ALIVE, now)
        self._size += 1
        self._live_count += 1
        self._gossip(record.node_id, Alive(record=record))
        self._emit(MemberJoined(record=record))
        self._on_added(record.node_id)

    def _evict_one(self) -> bool:
        gone = [(self._entries[n].state_change_s, n) for n in self._down]
        if not gone:
            return False
        self._forget(min(gone)[1])
        return True

    def _check_own_record(self, record: MemberRecord) -> None:
        """Out-vote a record of ourselves that is not ours (we restarted and forgot)."""
        if self.left:
            return
        local = self.local
        if record.incarnation <= local.incarnation and record.version <= local.version:
            same_version = record.version == local.version
            if (
                not same_version
                or dataclasses.replace(record, incarnation=local.incarnation) == local
            ):
                return
        self._refute(record.incarnation, record.version)

    def _refute(self, accused_incarnation: int, accused_version: int | None) -> None:
        if self.left:
            return
        local = self.local
        version = local.version
        if accused_version is not None and accused_version >= version:
            version = bumped(accused_version)
        incarnation = bumped(max(local.incarnation, accused_incarnation))
        refuted = dataclasses.replace(local, incarnation=incarnation, version=version)
        self._local_entry().record = refuted
        self._awareness.apply_delta(REFUTED_DELTA)
        self.refutations += 1
        self._gossip(self.local_id, Alive(record=refuted))

    def _raise_incarnation(self, entry: _Entry, incarnation: int) -> None:
        if incarnation > entry.record.incarnation:
            entry.record = dataclasses.replace(entry.record, incarnation=incarnation)

    def _set_state(self, entry: _Entry, state: MemberState, now: float) -> None:
        was_live = entry.state in LIVE_STATES
        is_live = state in LIVE_STATES
        self._live_count += int(is_live) - int(was_live)
        if entry.state is not state:
            if is_live:
                self._down.pop(entry.record.node_id, None)
            else:
                self._down[entry.record.node_id] = state
            entry.state = state
            entry.state_change_s = now

    # ------------------------------------------------- own entries, warm table

    def _get(self, node_id: str) -> _Entry | None:
        entry = self._entries.get(node_id)
        if entry is not None or (self._gone and node_id in self._gone):
            return entry
        return self._warm.get(node_id)

    def _own(self, node_id: str, entry: _Entry) -> _Entry:
        """``entry`` made ours to change: a copy when it is the shared warm one."""
        if self._entries.get(node_id) is entry:
            return entry
        own = _Entry(entry.record, entry.state, entry.state_change_s)
        self._entries[node_id] = own
        return own

    def _local_entry(self) -> _Entry:
        return self._entries[self.local_id]

    def _items(self) -> Iterable[tuple[str, _Entry]]:
        yield from self._entries.items()
        entries, gone = self._entries, self._gone
        for node_id, entry in self._warm.items():
            if node_id not in entries and node_id not in gone:
                yield node_id, entry

    def _forget(self, node_id: str) -> None:
        entry = self._get(node_id)
        if entry is None:
            return
        if entry.state in LIVE_STATES:
            self._live_count -= 1
        self._down.pop(node_id, None)
        self._size -= 1
        self._entries.pop(node_id, None)
        if node_id in self._warm:
            self._gone.add(node_id)
        self._on_forgotten(node_id)

    def _gossip(self, node_id: str, message: Message) -> None:
        self._broadcasts.queue(node_id, encode_part(message), message)

    def _emit(self, event: MembershipEvent) -> None:
        if len(self._events) >= EVENTS_MAX:
            self._events.popleft()
            self.events_dropped += 1
        self._events.append(event)
