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
    """Randomized round-robin over member ids (the local member is never probed).

    Each round walks a uniformly random permutation drawn lazily, one swap per step
    (Fisher-Yates, with the swapped positions kept in a dict): a round over N members
    costs O(members probed) rather than an O(N) shuffle up front.  The list itself may
    be a sequence shared by many cores (:meth:`seed_shared`, a warm start); it is only
    copied at the end of a round in which a member was forgotten.
    """

    __slots__ = (
        "_added",
        "_base",
        "_exclude",
        "_forgotten",
        "_index",
        "_rng",
        "_round_len",
        "_swaps",
    )

    def __init__(self, rng: Random, *, exclude: str = "") -> None:
        self._rng = rng
        self._exclude = exclude
        self._base: Sequence[str] = ()
        self._added: list[str] = []
        self._index = 0
        self._round_len = 0
        self._swaps: dict[int, int] = {}
        self._forgotten = False

    def __len__(self) -> int:
        return len(self._base) + len(self._added)

    @property
    def ids(self) -> Sequence[str]:
        """Every id in the order (some may have been forgotten since); do not mutate.

        It may still hold the excluded (local) id when seeded from a shared sequence;
        :meth:`pick` skips it.
        """
        if not self._added:
            return self._base
        if not self._base:
            return self._added
        return _Concat(self._base, self._added)

    def seed_shared(self, ids: Sequence[str]) -> None:
        """Start from ``ids`` (shared, never mutated here); only on an empty order."""
        if len(self) or self._index:
            raise ValueError("seed_shared needs an empty probe order")
        self._base = ids
        self._round_len = 0  # the first call to next() starts a round over them

    def add(self, node_id: str) -> None:
        """Add ``node_id`` to the order; it joins the current round at a random place."""
        self._added.append(node_id)
        if self._round_len:
            self._round_len += 1  # the positions not drawn yet stay uniformly random

    def forgot(self, node_id: str) -> None:
        """The table forgot ``node_id``: drop the forgotten at the next reshuffle."""
        self._forgotten = True

    def next(self, probeable: Callable[[str], bool], known: Callable[[str], bool]) -> str | None:
        """The next id to probe, or ``None`` if no member can be probed now.

        ``probeable`` says whether to probe a member now; ``known`` whether to keep it
        in the order at all.
        """
        for _ in range(len(self) + 1):
            if self._index >= self._round_len:
                self._new_round(known)
                if not self._round_len:
                    return None
            node_id = self._draw()
            if node_id != self._exclude and probeable(node_id):
                return node_id
        return None

    def pick(self, count: int, accept: Callable[[str], bool]) -> list[str]:
        """Up to ``count`` distinct random members passing ``accept`` (never the local one)."""
        exclude = self._exclude
        return pick_random(self.ids, count, lambda n: n != exclude and accept(n), self._rng)

    def _draw(self) -> str:
        index, swaps = self._index, self._swaps
        j = index + random_below(self._rng, self._round_len - index)
        at_j = swaps.get(j, j)
        swaps[j] = swaps.pop(index, index)
        self._index = index + 1
        base = self._base
        return base[at_j] if at_j < len(base) else self._added[at_j - len(base)]

    def _new_round(self, known: Callable[[str], bool]) -> None:
        if self._forgotten:  # only then is the list scanned (and copied)
            self._forgotten = False
            ids = self.ids
            self._base = [node_id for node_id in ids if node_id == self._exclude or known(node_id)]
            self._added = []
        self._index = 0
        self._swaps = {}
        self._round_len = len(self)


class _Concat(Sequence[str]):
    """Two sequences read as one, without copying either."""

    __slots__ = ("_first", "_second")

    def __init__(self, first: Sequence[str], second: Sequence[str]) -> None:
        self._first = first
        self._second = second

    def __len__(self) -> int:
        return len(self._first) + len(self._second)

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        first = self._first
        if index < len(first):
            return first[index]
        return self._second[index - len(first)]


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
        node_id = ids[random_below(rng, len(ids))]
        if node_id not in chosen and accept(node_id):
            chosen.append(node_id)
    return chosen


def random_below(rng: Random, n: int) -> int:
    """A uniform integer in ``[0, n)``, ``n > 0``: ``rng.randrange(n)`` without its two
    interpreted frames (a large simulation draws millions).  The same rejection
    sampling on ``getrandbits`` as CPython's ``random.py``, so the same numbers."""
    bits = n.bit_length()
    drawn = rng.getrandbits(bits)
    while drawn >= n:
        drawn = rng.getrandbits(bits)
    return drawn
