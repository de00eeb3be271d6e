"""What the membership core hands back: events that happened, datagrams to send.

Theory of operation
-------------------
The core never performs I/O.  After each input (``receive``, ``tick``, ``join``,
``leave``, ``update_local``) the caller drains

* ``outbox()``: :class:`Outgoing` messages, already encoded.  ``reliable=False``
  means "one sealed UDP datagram" and is guaranteed to fit
  ``codec.DATAGRAM_PLAINTEXT_BYTES_MAX``; ``reliable=True`` means "send over the
  secure stream" (push-pull, or anything too large for a datagram).
* ``events()``: membership events about *other* members, in the order they
  happened.  The local member's own record is read from ``Membership.local``.

Events are immutable, keyword-only dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, TypeAlias

from protocol.membership.messages import Message
from protocol.membership.record import MemberRecord


@dataclass(kw_only=True, slots=True, unsafe_hash=True)
class Outgoing:
    """One message for the shell to send.

    Immutable through ``Final`` fields and an ``__init__`` of its own rather than
    ``frozen=True``: the core builds one per message, and mypyc compiles this
    ``__init__`` natively, where a frozen dataclass's generated one stays interpreted
    (~20x slower; it was the largest single cost of a 10,000-node simulation).
    """

    addr: Final[str]
    """Destination ``host:port``; a push-pull reply goes back on the stream it answers."""
    message: Final[bytes]
    """The encoded message (``codec.encode``), not yet sealed."""
    reliable: Final[bool]
    """True: send over the secure stream.  False: one sealed datagram."""
    decoded: Final[Message | None]
    """What ``message`` encodes, set only by a core built with ``keep_decoded=True``
    (in-process simulations hand it to ``Membership.receive_message``, no decoding)."""
    wire_bytes: Final[int | None]
    """Set only with ``decoded`` on a stream message, whose bytes such a core does not
    build (``message`` is empty): the length they would have (``codec.encoded_size``)."""

    def __init__(
        self,
        *,
        addr: str,
        message: bytes,
        reliable: bool,
        decoded: Message | None = None,
        wire_bytes: int | None = None,
    ) -> None:
        self.addr = addr
        self.message = message
        self.reliable = reliable
        self.decoded = decoded
        self.wire_bytes = wire_bytes

    @property
    def size(self) -> int:
        """Length of the encoded message, whether or not its bytes were built."""
        return len(self.message) if self.wire_bytes is None else self.wire_bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class MemberJoined:
    """A member became alive: first heard of, or back after death or leave."""

    record: MemberRecord
    """Its record as now known."""


@dataclass(frozen=True, kw_only=True, slots=True)
class MemberUpdated:
    """A member's record got a newer ``version`` (its owner changed something)."""

    record: MemberRecord
    """The new record."""


@dataclass(frozen=True, kw_only=True, slots=True)
class MemberSuspected:
    """A member is suspected of having failed; it has until its timer ends to refute."""

    node_id: str
    """The suspect."""
    incarnation: int
    """Incarnation the suspicion is about."""
    suspected_by: str
    """The first accuser we heard."""


@dataclass(frozen=True, kw_only=True, slots=True)
class MemberAlive:
    """A suspected member refuted the suspicion (higher incarnation)."""

    node_id: str
    """The member."""
    incarnation: int
    """Its new incarnation."""


@dataclass(frozen=True, kw_only=True, slots=True)
class MemberDead:
    """A member was declared dead (suspicion timed out, or we heard it declared)."""

    node_id: str
    """The member."""
    incarnation: int
    """Incarnation at which it died."""
    declared_by: str
    """The member that declared it dead."""


@dataclass(frozen=True, kw_only=True, slots=True)
class MemberLeft:
    """A member left the cluster gracefully."""

    node_id: str
    """The member."""
    incarnation: int
    """Incarnation at which it left."""


MembershipEvent: TypeAlias = (
    MemberJoined | MemberUpdated | MemberSuspected | MemberAlive | MemberDead | MemberLeft
)
"""Any event the core reports."""
