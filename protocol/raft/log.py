"""The in-memory Raft log: snapshot, entries, and the commit/apply/persist cursors.

Theory of operation
-------------------
::

    snapshot.index   applied      committed     stable_index      last_index
         |              |             |               |                |
    [snapshot]  e  e  e | e  e  e  e  | e  e  e  e  e | e  e  e  e  e  |
                 applied   to apply     not committed     not yet on disk

* ``stable_index``: entries up to here are on disk as far as the core knows (the
  shell confirmed them with ``advance``).  A truncation below it pulls it back.
* ``committed``: known committed.  Never decreases while the node runs; a restart
  may start lower (the persisted commit), which is safe because committed entries
  never change.
* ``applied``: handed to the shell in a ``Ready`` and acknowledged.

Entries at or below ``committed`` are never truncated: an append that would do so
proves the sender wrong and raises ``RemoteProtocolError`` before anything changes.
Compaction replaces an applied prefix with a snapshot; a snapshot received from the
leader replaces the whole log (``restore``) and waits in ``unstable_snapshot`` until
the shell has persisted and installed it.
"""

from __future__ import annotations

from collections.abc import Sequence

from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.raft.entries import (
    EMPTY_SNAPSHOT,
    Entry,
    PersistentState,
    Snapshot,
    check_persistent_state,
)


class RaftLog:
    """One node's log.  The core mutates it; everything else should only read."""

    def __init__(self, state: PersistentState | None) -> None:
        entries: tuple[Entry, ...] = ()
        if state is None:
            snapshot, commit = EMPTY_SNAPSHOT, 0
        else:
            check_persistent_state(state)
            snapshot, entries = state.snapshot, state.entries
            commit = max(state.hard_state.commit, snapshot.index)
        self.snapshot: Snapshot = snapshot
        """Latest snapshot; replaces every entry up to ``snapshot.index``."""
        self._entries: list[Entry] = list(entries)
        self.committed = commit
        """Highest index known to be committed."""
        self.applied = snapshot.index
        """Highest index the shell applied (or installed through a snapshot)."""
        self.stable_index = self.last_index
        """Highest index the shell confirmed on disk."""
        self.unstable_snapshot: Snapshot | None = None
        """A snapshot from the leader, not yet persisted and installed by the shell."""

    # ------------------------------------------------------------------ reading

    @property
    def first_index(self) -> int:
        """Index of the first entry still held (after the snapshot)."""
        return self.snapshot.index + 1

    @property
    def last_index(self) -> int:
        return self.snapshot.index + len(self._entries)

    @property
    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else self.snapshot.term

    def term(self, index: int) -> int | None:
        """Term of the entry at ``index``; None if compacted away or beyond the end."""
        offset = index - self.snapshot.index
        if offset == 0:
            return self.snapshot.term
        if 0 < offset <= len(self._entries):
            return self._entries[offset - 1].term
        return None

    def match_term(self, index: int, term: int) -> bool:
        """True when the log holds an entry at ``index`` with ``term``."""
        return self.term(index) == term

    def entry(self, index: int) -> Entry:
        """The entry at ``index`` (which must be held)."""
        if not self.first_index <= index <= self.last_index:
            raise LocalProtocolError(
                f"entry {index} is not held (log holds {self.first_index}..{self.last_index})"
            )
        return self._entries[index - self.first_index]

    def slice(self, low: int, high: int) -> list[Entry]:
        """Entries with ``low <= index < high``, all of which must be held."""
        if low > high or low < self.first_index or high > self.last_index + 1:
            raise LocalProtocolError(
                f"cannot slice [{low}, {high}) from a log holding"
                f" {self.first_index}..{self.last_index}"
            )
        return self._entries[low - self.first_index : high - self.first_index]

    def entries_from(self, index: int, count_max: int, bytes_max: int) -> list[Entry] | None:
        """Up to ``count_max`` entries from ``index`` within ``bytes_max`` (at least one);
        None when ``index`` was compacted away (the follower needs the snapshot)."""
        if index < self.first_index:
            return None
        start = index - self.first_index
        chosen = self._entries[start : start + count_max]
        size = 0
        for position, entry in enumerate(chosen):
            size += len(entry.data)
            if size > bytes_max and position > 0:
                return chosen[:position]
        return chosen

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: is a log ending at (last_index, last_term) at least as new?"""
        return last_term > self.last_term or (
            last_term == self.last_term and last_index >= self.last_index
        )

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The last (index, term) at or below ``index`` whose term is <= ``term``.

        Used to skip a whole term of mismatching entries per round trip (etcd's
        fast log backtracking).  Stops at the snapshot, whose entries match.
        """
        index = min(index, self.last_index)
        while index > self.snapshot.index:
            entry_term = self.term(index)
            if entry_term is not None and entry_term <= term:
                return index, entry_term
            index -= 1
        return self.snapshot.index, self.snapshot.term

    def unstable_entries(self) -> list[Entry]:
        """Entries the shell has not yet confirmed on disk."""
        return self._entries[self.stable_index - self.snapshot.index :]

    def entries_to_apply(self) -> list[Entry]:
        """Committed entries not yet applied (after any snapshot waiting to install)."""
        after = self.applied
        if self.unstable_snapshot is not None:
            after = max(after, self.unstable_snapshot.index)
        return self.slice(after + 1, self.committed + 1)

    # ------------------------------------------------------------------ writing

    def append(self, entries: Sequence[Entry]) -> None:
        """Add entries after the last one (the leader's own proposals)."""
        if entries and entries[0].index != self.last_index + 1:
            raise LocalProtocolError(
                f"append at {entries[0].index} does not follow the last index {self.last_index}"
            )
        self._entries.extend(entries)

    def maybe_append(self, prev_index: int, prev_term: int, entries: Sequence[Entry]) -> bool:
        """The follower's side of AppendEntries (Raft §5.3).

        False if the log has no entry (prev_index, prev_term).  Otherwise entries that
        conflict (same index, other term) and everything after them are removed and
        the new entries appended; entries that already match are kept, so a stale or
        duplicated append never shortens the log.
        """
        if not self.match_term(prev_index, prev_term):
            return False
        for position, entry in enumerate(entries):
            if self.term(entry.index) == entry.term:
                continue
            if entry.index <= self.committed:
                raise RemoteProtocolError(
                    f"append conflicts with committed entry {entry.index}"
                    f" (committed up to {self.committed})"
                )
            self._truncate_after(entry.index - 1)
            self._entries.extend(entries[position:])
            break
        return True

    def _truncate_after(self, index: int) -> None:
        del self._entries[index - self.snapshot.index :]
        self.stable_index = min(self.stable_index, index)

    def commit_to(self, index: int) -> bool:
        """Raise the commit index (never lowers it); True if it moved."""
        if index <= self.committed:
            return False
        if index > self.last_index:
            raise RemoteProtocolError(
                f"commit index {index} is beyond the last entry {self.last_index}"
            )
        self.committed = index
        return True

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the whole log with a snapshot from the leader."""
        self.snapshot = snapshot
        self._entries = []
        self.committed = snapshot.index
        self.stable_index = snapshot.index
        self.unstable_snapshot = snapshot

    def compact(self, snapshot: Snapshot) -> None:
        """Drop the entries a local snapshot covers (``snapshot.index <= applied``)."""
        del self._entries[: snapshot.index - self.snapshot.index]
        self.snapshot = snapshot

    def stable_to(self, index: int, term: int) -> None:
        """The shell persisted entries up to (index, term), unless since truncated."""
        if self.match_term(index, term) and index > self.stable_index:
            self.stable_index = index

    def snapshot_stable(self, snapshot: Snapshot) -> None:
        """The shell persisted and installed ``snapshot``."""
        if self.unstable_snapshot is snapshot:
            self.unstable_snapshot = None
        self.applied = max(self.applied, snapshot.index)
        self.stable_index = max(self.stable_index, snapshot.index)

    def applied_to(self, index: int) -> None:
        """The shell applied every committed entry up to ``index``."""
        self.applied = max(self.applied, index)
