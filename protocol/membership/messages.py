"""The messages members exchange (memberlist net.go), as immutable dataclasses.

Theory of operation
-------------------
Failure detection (always datagrams):

* ``Ping`` -> ``Ack``: a direct probe.  ``target_id`` guards against a reused address.
* ``IndirectPing``: "please probe ``target_id`` at ``target_addr`` for me".  The
  helper pings the target with its own sequence number and relays the ``Ack``; if it
  hears nothing within ``nack_after_ms`` it answers ``Nack`` (Lifeguard), which tells
  the requester that *it* is healthy enough to hear answers.

Dissemination (piggybacked on datagrams, queued in ``broadcast.py``):

* ``Alive`` carries the full record; ``Suspect`` and ``Dead`` carry an accusation at an
  incarnation.  ``Dead`` with ``from_id == node_id`` is a graceful leave.

Anti-entropy (always over the secure stream):

* ``PushPull``: a full state exchange; the receiver of a request merges it and answers
  with its own state (``reply=True``).  ``join`` marks the first exchange of a node.

``Compound`` bundles several of the above into one datagram; it never nests.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TypeAlias

from protocol.membership.record import MemberRecord
from protocol.membership.state import MemberState

SEQ_NO_MODULUS = 2**32
"""Probe sequence numbers wrap at 32 bits, like memberlist's."""


class MessageType(enum.IntEnum):
    """Message type numbers on the wire.  Append only, never renumber."""

    PING = 1
    INDIRECT_PING = 2
    ACK = 3
    NACK = 4
    SUSPECT = 5
    ALIVE = 6
    DEAD = 7
    PUSH_PULL = 8
    COMPOUND = 9


@dataclass(frozen=True, kw_only=True, slots=True)
class Ping:
    """Direct probe; answered with :class:`Ack` carrying the same ``seq_no``."""

    seq_no: int
    """Probe sequence number chosen by the sender."""
    target_id: str
    """Node the sender means to probe; other nodes ignore the ping."""
    source_id: str
    """Node id of the sender."""


@dataclass(frozen=True, kw_only=True, slots=True)
class IndirectPing:
    """Ask a helper to probe ``target_id`` (SWIM ping-req)."""

    seq_no: int
    """The requester's sequence number; relayed acks and nacks carry it."""
    target_id: str
    """Node to probe."""
    target_addr: str
    """Where the requester believes the target listens, ``host:port``."""
    nack_after_ms: int | None
    """Send a :class:`Nack` if the target is silent this long; ``None``: no nack."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Ack:
    """The probed node answered (directly, or relayed by a helper)."""

    seq_no: int
    """Sequence number of the probe being answered."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Nack:
    """A helper is alive but did not hear from the target in time (Lifeguard)."""

    seq_no: int
    """The requester's sequence number."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Suspect:
    """``from_id`` suspects ``node_id`` at ``incarnation``."""

    node_id: str
    """The suspected member."""
    incarnation: int
    """Incarnation the accusation is about."""
    from_id: str
    """The accuser; each accuser counts once towards Lifeguard confirmations."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Alive:
    """A member's record, asserting it is alive at ``record.incarnation``."""

    record: MemberRecord
    """The full record, as its owner published it."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Dead:
    """``from_id`` declares ``node_id`` dead; a leave when ``from_id == node_id``."""

    node_id: str
    """The dead (or leaving) member."""
    incarnation: int
    """Incarnation the declaration is about."""
    from_id: str
    """Who declared it."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PushPullEntry:
    """One member in a full-state exchange."""

    record: MemberRecord
    """The newest record the sender knows."""
    state: MemberState
    """Liveness as the sender sees it."""


class SharedMembers:
    """A push-pull's members as one shared, converged table seen through the sender's
    changes: an in-process simulation's warm start (see ``table.WarmTable``).

    It iterates like the tuple it stands for (``changed`` first, then every ``base``
    entry not ``hidden``) and encodes to the same bytes, but building, encoding and
    merging it cost O(changes) instead of O(members): a receiver sharing the same
    ``base`` knows every base entry already.  Never decoded from the wire.
    """

    __slots__ = ("base", "changed", "hidden")

    def __init__(
        self,
        base: Mapping[str, PushPullEntry],
        changed: tuple[PushPullEntry, ...],
        hidden: frozenset[str],
    ) -> None:
        self.base = base
        """The shared table (never mutated): every member ALIVE with its first record."""
        self.changed = changed
        """The sender's entries that differ from ``base`` or are not in it."""
        self.hidden = hidden
        """Ids of ``base`` the sender does not send as they are there (changed, forgotten)."""

    def __len__(self) -> int:
        return len(self.changed) + len(self.base) - len(self.hidden)

    def __iter__(self) -> Iterator[PushPullEntry]:
        yield from self.changed
        hidden = self.hidden
        for node_id, entry in self.base.items():
            if node_id not in hidden:
                yield entry


@dataclass(frozen=True, kw_only=True, slots=True)
class PushPull:
    """Full state of the sender (anti-entropy); sent over the secure stream."""

    join: bool
    """True on the first exchange of a joining node."""
    reply: bool
    """True when answering a request; replies are not answered again."""
    members: tuple[PushPullEntry, ...] | SharedMembers
    """Every member the sender knows, itself included (``SharedMembers``: simulations)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Compound:
    """Several messages in one datagram, handled in order; never nested."""

    messages: tuple[SimpleMessage, ...]
    """The bundled messages."""


SimpleMessage: TypeAlias = Ping | IndirectPing | Ack | Nack | Suspect | Alive | Dead | PushPull
"""Any message but :class:`Compound`."""
Message: TypeAlias = SimpleMessage | Compound
"""Any message."""
