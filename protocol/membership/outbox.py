"""Outgoing messages: datagrams filled with piggybacked broadcasts, stream messages.

Theory of operation
-------------------
Every datagram the core sends carries some message of its own (ping, ack, nack,
ping-req) and is then filled with pending broadcasts up to
:data:`BROADCAST_PART_BYTES_MAX` (memberlist ``sendMsg``), which is the plaintext
budget of a sealed datagram minus the compound framing.  A gossip round sends
broadcasts alone.  One part is sent as a plain message, several as a COMPOUND.

Since every part is bounded (the broadcast queue refuses bigger ones and the local
record is checked to fit), a datagram never exceeds
``codec.DATAGRAM_PLAINTEXT_BYTES_MAX``; should one ever do, it is marked
``reliable=True`` rather than sent as a datagram that cannot arrive.

With ``keep_decoded=True`` (in-process simulations only) every :class:`Outgoing`
also carries the message object it encodes, in ``decoded``.  A datagram's bytes are
built all the same, so sizes and the datagram budget are those of the wire; a stream
message (a push-pull: up to megabytes, no budget) only has its encoded length
computed (``codec.encoded_size``, in ``Outgoing.wire_bytes``).

The outbox is bounded (:data:`OUTBOX_MESSAGES_MAX`): a caller that never drains it
loses the oldest messages (counted), as a congested socket would.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import cast

from protocol.membership.broadcast import BroadcastQueue
from protocol.membership.codec import (
    COMPOUND_OVERHEAD_BYTES,
    DATAGRAM_PLAINTEXT_BYTES_MAX,
    encode,
    encode_compound_parts,
    encode_part,
    encode_single_part,
    encoded_size,
)
from protocol.membership.events import Outgoing
from protocol.membership.messages import Compound, Message, SimpleMessage

BROADCAST_PART_BYTES_MAX = DATAGRAM_PLAINTEXT_BYTES_MAX - COMPOUND_OVERHEAD_BYTES
"""Room for message parts in one datagram; also the largest single broadcast."""
OUTBOX_MESSAGES_MAX = 65_536
"""Undrained outgoing messages kept; the oldest are dropped (and counted) beyond this."""


class Outbox:
    """Encoded messages waiting for the caller to send them."""

    __slots__ = (
        "_broadcasts",
        "_keep_decoded",
        "_members",
        "_messages",
        "_retransmit_mult",
        "dropped",
    )

    def __init__(
        self,
        broadcasts: BroadcastQueue,
        members: Callable[[], int],
        retransmit_mult: int,
        *,
        keep_decoded: bool = False,
    ) -> None:
        self._broadcasts = broadcasts
        self._keep_decoded = keep_decoded
        self._members = members
        self._retransmit_mult = retransmit_mult
        self._messages: deque[Outgoing] = deque()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._messages)

    def drain(self) -> list[Outgoing]:
        if not self._messages:
            return []
        messages = list(self._messages)
        self._messages.clear()
        return messages

    def datagram(self, addr: str, messages: list[SimpleMessage]) -> None:
        """Send ``messages`` in one datagram, filled up with piggybacked broadcasts."""
        parts = [encode_part(message) for message in messages]
        free = BROADCAST_PART_BYTES_MAX - sum(len(part) for part in parts)
        if not len(self._broadcasts):
            free = 0  # nothing to piggyback
        if not self._keep_decoded:
            if free > 0:
                parts += self._take(free)
            self._datagram_of_parts(addr, parts, None)
            return
        objects: list[SimpleMessage] = list(messages)
        if free > 0:
            self._take_decoded(free, parts, objects)
        self._datagram_of_parts(addr, parts, objects)

    def gossip(self, addr: str) -> bool:
        """Send one datagram of broadcasts alone; False if there was nothing to send."""
        objects: list[SimpleMessage] | None = None
        if self._keep_decoded:
            parts: list[bytes] = []
            objects = []
            self._take_decoded(BROADCAST_PART_BYTES_MAX, parts, objects)
        else:
            parts = self._take(BROADCAST_PART_BYTES_MAX)
        if parts:
            self._datagram_of_parts(addr, parts, objects)
        return bool(parts)

    def stream(self, addr: str, message: Message) -> None:
        """Send ``message`` over the secure stream."""
        if self._keep_decoded:
            size = encoded_size(message)
            self._push(
                Outgoing(addr=addr, message=b"", reliable=True, decoded=message, wire_bytes=size)
            )
            return
        self._push(Outgoing(addr=addr, message=encode(message), reliable=True))

    def _take(self, free: int) -> list[bytes]:
        return self._broadcasts.take(free, self._members(), self._retransmit_mult)

    def _take_decoded(self, free: int, parts: list[bytes], objects: list[SimpleMessage]) -> None:
        taken = self._broadcasts.take_with_messages(free, self._members(), self._retransmit_mult)
        for part, message in taken:
            parts.append(part)
            objects.append(cast(SimpleMessage, message))  # the table queues messages

    def _datagram_of_parts(
        self, addr: str, parts: list[bytes], objects: list[SimpleMessage] | None
    ) -> None:
        data = encode_single_part(parts[0]) if len(parts) == 1 else encode_compound_parts(parts)
        reliable = len(data) > DATAGRAM_PLAINTEXT_BYTES_MAX
        decoded: Message | None = None
        if objects is not None:
            decoded = objects[0] if len(objects) == 1 else Compound(messages=tuple(objects))
        self._push(Outgoing(addr=addr, message=data, reliable=reliable, decoded=decoded))

    def _push(self, outgoing: Outgoing) -> None:
        if len(self._messages) >= OUTBOX_MESSAGES_MAX:
            self._messages.popleft()
            self.dropped += 1
        self._messages.append(outgoing)
