"""Stop strings, found in streamed text even when they span token boundaries.

Theory of operation
-------------------
A stop string may arrive split over several deltas ("Obs" + "erver:").  So the
matcher holds back the longest tail of the text that is still the start of some stop
string, and releases it once the next delta shows it is not one.  When a stop string
appears, everything before it is released, the stop string and what follows are
dropped (OpenAI's behaviour: the stop sequence is not part of the text), and the
generation ends.

Only the held-back tail is searched: text released earlier had no stop string and no
unfinished one, so a match can only start inside the tail.  The tail is shorter than
the longest stop string, which the API bounds.
"""

from __future__ import annotations

from collections.abc import Sequence


class StopMatcher:
    """Cuts streamed text at the first of ``stops`` (an empty list: never)."""

    def __init__(self, stops: Sequence[str]) -> None:
        if any(not stop for stop in stops):
            raise ValueError("stop strings must not be empty")
        self._stops = tuple(stops)
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Text that may be emitted now; sets :attr:`stopped` when a stop string matched."""
        if self.stopped:
            return ""
        held = self._held + text
        cut = min((i for i in (held.find(stop) for stop in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self._held, self.stopped = "", True
            return held[:cut]
        keep = self._unfinished_tail(held)
        self._held = held[len(held) - keep :] if keep else ""
        return held[: len(held) - keep]

    def flush(self) -> str:
        """The held-back tail (the text ended without completing a stop string)."""
        held, self._held = self._held, ""
        return held

    def _unfinished_tail(self, text: str) -> int:
        """Length of the longest tail of ``text`` that some stop string starts with."""
        longest = 0
        for stop in self._stops:
            for length in range(min(len(stop) - 1, len(text)), longest, -1):
                if stop.startswith(text[len(text) - length :]):
                    longest = length
                    break
        return longest
