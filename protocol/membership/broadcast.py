"""The transmit-limited broadcast queue (memberlist queue.go / broadcast.go).

Theory of operation
-------------------
Every membership change (ALIVE, SUSPECT, DEAD) is queued as a *broadcast* and
piggybacked onto outgoing datagrams (pings, acks, gossip rounds) until it has been
sent ``retransmit_limit(retransmit_mult, n)`` times, ``retransmit_mult *
ceil(log10(n + 1))``: enough for an infection-style epidemic to reach every member
with high probability, and no more.

* Broadcasts are *named* by the member they describe.  Queuing a new one about a
  member drops the older one, which is stale by construction (the core only queues
  what changed its view).
* :meth:`BroadcastQueue.take` fills a byte budget fewest-transmits-first, then
  largest-first, then newest-first (memberlist's btree order), so fresh news spreads
  first and big records are not starved by small ones.
* The queue is bounded (:data:`BROADCAST_QUEUE_ENTRIES_MAX`); on overflow the entry
  that memberlist's ``Prune`` would drop goes first: most transmitted, smallest,
  oldest.  Drops are counted.

Internally a heap with lazy deletion keeps ``take`` at O(k log n) for k parts, and a
count of queued parts per length lets it stop as soon as no queued part fits the
space left, instead of stepping over up to ``BROADCAST_TAKE_SKIPS_MAX`` entries.

Each entry may also keep the message object it encodes (``queue(..., message=m)``),
so an in-process simulation can hand it over without decoding; see
:meth:`BroadcastQueue.take_with_messages`.  The wire path never reads it.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

BROADCAST_QUEUE_ENTRIES_MAX = 4096
"""Pending broadcasts; one per member at most, so this matches the member bound."""
BROADCAST_TAKE_SKIPS_MAX = 64
"""Entries too big for the space left that ``take`` steps over before giving up."""
HEAP_COMPACT_FACTOR = 2
"""Rebuild the heap once it holds this many times more entries than are live."""


def retransmit_limit(retransmit_mult: int, members: int) -> int:
    """Transmits per broadcast: ``retransmit_mult * ceil(log10(members + 1))``."""
    node_scale = math.ceil(math.log10(members + 1))
    return retransmit_mult * node_scale


@dataclass(slots=True)
class _Entry:
    key: str
    part: bytes
    order: int
    message: object | None = None  # (not plain ``object``: mypyc rejects that default)
    transmits: int = 0

    def heap_key(self) -> tuple[int, int, int, str]:
        return (self.transmits, -len(self.part), -self.order, self.key)


class BroadcastQueue:
    """Pending broadcasts, each an encoded message part, named by member id."""

    def __init__(self, part_bytes_max: int, entries_max: int = BROADCAST_QUEUE_ENTRIES_MAX) -> None:
        self._part_bytes_max = part_bytes_max
        self._entries_max = entries_max
        self._live: dict[str, _Entry] = {}
        self._lengths: dict[int, int] = {}
        """How many live parts have each length; its smallest key is the smallest part."""
        self._heap: list[tuple[int, int, int, str]] = []
        self._order = 0
        self.dropped = 0
        """Broadcasts pruned because the queue was full."""
        self.oversized = 0
        """Broadcasts refused because they could never fit a datagram (push-pull carries
        them instead)."""

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: str) -> bool:
        return key in self._live

    def transmits(self, key: str) -> int | None:
        """How often the broadcast named ``key`` was sent; ``None`` if not queued."""
        entry = self._live.get(key)
        return None if entry is None else entry.transmits

    def queue(self, key: str, part: bytes, message: object = None) -> None:
        """Queue ``part`` (see ``codec.encode_part``), replacing any broadcast named ``key``.

        ``message`` is the object ``part`` encodes, kept for :meth:`take_with_messages`.
        """
        if len(part) > self._part_bytes_max:
            self._forget(key)  # whatever was queued about ``key`` is stale now
            self.oversized += 1
            return
        self._forget(key)
        self._order += 1
        entry = _Entry(key=key, part=part, order=self._order, message=message)
        self._live[key] = entry
        self._lengths[len(part)] = self._lengths.get(len(part), 0) + 1
        heapq.heappush(self._heap, entry.heap_key())
        while len(self._live) > self._entries_max:
            self._prune_one()
        self._maybe_compact()

    def discard(self, key: str) -> None:
        """Forget the broadcast named ``key``, if any."""
        self._forget(key)

    def _forget(self, key: str) -> None:
        entry = self._live.pop(key, None)
        if entry is None:
            return
        length = len(entry.part)
        left = self._lengths[length] - 1
        if left:
            self._lengths[length] = left
        else:
            del self._lengths[length]

    def take(self, bytes_available: int, members: int, retransmit_mult: int) -> list[bytes]:
        """Parts that fit in ``bytes_available``, counting one transmit for each."""
        return [e.part for e in self._take(bytes_available, members, retransmit_mult)]

    def take_with_messages(
        self, bytes_available: int, members: int, retransmit_mult: int
    ) -> list[tuple[bytes, object]]:
        """Like :meth:`take`, with each part's message object (``None`` if not kept)."""
        chosen = self._take(bytes_available, members, retransmit_mult)
        return [(e.part, e.message) for e in chosen]

    def _take(self, bytes_available: int, members: int, retransmit_mult: int) -> list[_Entry]:
        if not self._live:
            return []
        limit = retransmit_limit(retransmit_mult, members)
        chosen: list[_Entry] = []
        skipped: list[tuple[int, int, int, str]] = []
        free = bytes_available
        while self._heap and free > 0 and len(skipped) < BROADCAST_TAKE_SKIPS_MAX:
            item = heapq.heappop(self._heap)
            entry = self._live.get(item[3])
            if entry is None or entry.heap_key() != item:
                continue  # stale: replaced, discarded or already re-pushed
            if len(entry.part) > free:
                skipped.append(item)
                if free < min(self._lengths):
                    break  # no queued part fits what is left
                continue
            chosen.append(entry)
            free -= len(entry.part)
        for item in skipped:
            heapq.heappush(self._heap, item)
        for entry in chosen:
            entry.transmits += 1
            if entry.transmits >= limit:
                self._forget(entry.key)
            else:
                heapq.heappush(self._heap, entry.heap_key())
        self._maybe_compact()
        return chosen

    def _prune_one(self) -> None:
        victim = max(self._live.values(), key=lambda e: (e.transmits, -len(e.part), -e.order))
        self._forget(victim.key)
        self.dropped += 1

    def _maybe_compact(self) -> None:
        if len(self._heap) > HEAP_COMPACT_FACTOR * len(self._live) + BROADCAST_TAKE_SKIPS_MAX:
            self._heap = [entry.heap_key() for entry in self._live.values()]
            heapq.heapify(self._heap)
