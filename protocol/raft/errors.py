"""Why the Raft core refused a request, and whose fault it was.

::

    ProtocolError                          (protocol.errors)
    ├── LocalProtocolError                 the caller misused the core: bad argument,
    │   │                                  ``ready()`` twice without ``advance()``,
    │   │                                  inconsistent persistent state handed back
    │   └── ProposalRefused                the core is fine, but cannot take this
    │       │                              proposal here or now; nothing changed
    │       ├── NotLeader                  ask ``leader_hint`` instead (may be None)
    │       ├── LeaderTransferInProgress   retry once the transfer ends
    │       ├── ConfChangeInProgress       one membership change at a time
    │       └── UncommittedBacklogFull     wait for the log to commit what it has
    └── RemoteProtocolError                a peer sent a malformed or impossible
                                           message: drop it, count it, keep serving

A ``ProposalRefused`` is a normal event in a cluster whose leader moves; the shell
redirects or retries.  Every other ``LocalProtocolError`` is a bug in the caller.
"""

from __future__ import annotations

from protocol.errors import LocalProtocolError


class ProposalRefused(LocalProtocolError):
    """This node cannot accept the proposal now; the core's state did not change."""


class NotLeader(ProposalRefused):
    """Only the leader takes proposals; ``leader_hint`` is who we believe leads."""

    def __init__(self, leader_hint: str | None) -> None:
        where = f"ask {leader_hint!r}" if leader_hint is not None else "no leader known"
        super().__init__(f"this node is not the Raft leader ({where})")
        self.leader_hint = leader_hint
        """The leader this node last heard from in its current term, or None."""


class LeaderTransferInProgress(ProposalRefused):
    """Proposals wait while leadership is being handed to another voter."""


class ConfChangeInProgress(ProposalRefused):
    """A membership change is still uncommitted (one server at a time, Raft §4.1)."""


class UncommittedBacklogFull(ProposalRefused):
    """The leader holds ``RaftConfig.uncommitted_bytes_max`` of uncommitted entries."""
