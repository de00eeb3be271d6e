"""What the core hands the shell after some inputs: ``Ready``, and how to process it.

Theory of operation
-------------------
The core performs no I/O.  After inputs (``step``, ``tick``, ``propose`` ...) the
shell asks ``has_ready()``, takes ``ready()``, and processes it **in this order**:

1. Persist, atomically if the store allows (one LMDB write transaction), and durably:

   a. ``snapshot``: it replaces the durable snapshot *and the whole durable log*;
   b. ``entries``: delete every durable entry with index >= ``entries[0].index``,
      then append these;
   c. ``hard_state``: term, vote, commit.

   Persisting before sending is what makes a vote or an acknowledgement binding: a
   node that crashed after promising must remember the promise.
2. Send ``messages`` (best effort: the core retries whatever matters).
3. Install ``snapshot`` into the state machine, then apply ``committed_entries``
   in order.  Entries of kind ``CONF_CHANGE`` were already applied to the
   configuration by the core; the shell only observes them.
4. Call ``advance(ready)``.

Between ``ready()`` and ``advance()`` the shell may keep feeding inputs, but may not
call ``ready()`` again.  If the process dies anywhere in between, whatever reached
the disk is what ``PersistentState`` holds on restart; nothing else is needed.

On restart the shell rebuilds its state machine from the persisted snapshot's data
and builds ``RaftNode(node_id, config, persistent_state, rng)``; the first ``Ready``
hands out again every committed entry after the snapshot.  A local snapshot
(``RaftNode.compact``) is returned to the shell directly: persist it first, and only
then drop the durable entries it covers.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.raft.entries import Entry, HardState, Snapshot
from protocol.raft.messages import Message
from protocol.raft.roles import Role


@dataclass(frozen=True, kw_only=True, slots=True)
class SoftState:
    """Volatile facts the shell may want to show; never persisted."""

    leader_id: str | None
    """The leader of the current term, if known."""
    role: Role
    """This node's role."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Ready:
    """One batch of work for the shell (see the module docstring for the order)."""

    hard_state: HardState | None
    """Persist before sending; None if unchanged since the last ``Ready``."""
    entries: tuple[Entry, ...]
    """Persist, replacing durable entries from ``entries[0].index`` on."""
    snapshot: Snapshot | None
    """A snapshot from the leader: persist (replacing the log), then install."""
    messages: tuple[Message, ...]
    """Send after persisting."""
    committed_entries: tuple[Entry, ...]
    """Apply in order, after installing ``snapshot``."""
    soft_state: SoftState | None
    """New leader or role, if either changed since the last ``Ready``."""

    def is_empty(self) -> bool:
        """True when there is nothing to do."""
        return not (
            self.hard_state
            or self.entries
            or self.snapshot
            or self.messages
            or self.committed_entries
            or self.soft_state
        )
