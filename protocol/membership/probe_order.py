"""Whom to probe next, and how to pick random members without scanning them all.

Theory of operation
-------------------
SWIM probes one member per probe interval.  Picking uniformly at random gives an
unbounded worst-case detection time, so members are probed in *randomized
round-robin* order (memberlist ``probe``/``resetNodes``): the list is shuffled, walked
once, reshuffled.  A new member is inserted at a random position so it is probed
within one round on average; members that are not probe-able right now (dead, left)
are skipped as the walk reaches them, and members the table forgot are dropped at the
next reshuffle.

The same list serves :func:`pick_random` (memberlist ``kRandomNodes``): gossip
targets, indirect-probe helpers and push-pull partners are drawn by rejection
sampling, so a round costs O(count) rather than O(members).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from random import Random

RANDOM_PICK_TRIES_PER_MEMBER = 3
"""Rejection-sampling tries per member in the list before giving up (memberlist)."""


class ProbeOrder:
    """Randomized round-robin over member ids (the local member is never added)."""

    __slots__ = ("_ids", "_index", "_rng")

    def __init__(self, rng: Random) -> None:
        self._rng = rng
        self._ids: list[str] = []
        self._index = 0

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> Sequence[str]:
        """Every id in the order (some may have been forgotten since); do not mutate."""
        return self._ids

    def add(self, node_id: str) -> None:
        """Insert ``node_id`` at a random position (memberlist ``randomOffset``)."""
        self._ids.append(node_id)
        offset = self._rng.randrange(len(self._ids))
        last = len(self._ids) - 1
        self._ids[offset], self._ids[last] = self._ids[last], self._ids[offset]

    def next(self, probeable: Callable[[str], bool], known: Callable[[str], bool]) -> str | None:
        """The next id to probe, or ``None`` if no member can be probed now.

        ``probeable`` says whether to probe a member now; ``known`` whether to keep it
        in the order at all.
        """
        for _ in range(len(self._ids) + 1):
            if self._index >= len(self._ids):
                self._ids = [node_id for node_id in self._ids if known(node_id)]
                self._rng.shuffle(self._ids)
                self._index = 0
                if not self._ids:
                    return None
            node_id = self._ids[self._index]
            self._index += 1
            if probeable(node_id):
                return node_id
        return None


def pick_random(
    ids: Sequence[str], count: int, accept: Callable[[str], bool], rng: Random
) -> list[str]:
    """Up to ``count`` distinct ids from ``ids`` passing ``accept``, in random order."""
    chosen: list[str] = []
    if not ids:
        return chosen
    for _ in range(RANDOM_PICK_TRIES_PER_MEMBER * len(ids)):
        if len(chosen) >= count:
            break
        node_id = ids[rng.randrange(len(ids))]
        if node_id not in chosen and accept(node_id):
            chosen.append(node_id)
    return chosen
