"""The sessions a stage serves: one KV cache (and, on the last stage, one sampler) each,
bounded in number, least recently used evicted first.

Theory of operation
-------------------
A session lives as long as its secure stream: opened by a stage open, closed when the
upstream hop ends the stream.  Each holds a :class:`~vramancer_node.runtime.KVCache`
bounded by the context the driver reserved.  At most ``sessions_max`` sessions hold a
cache at once: opening one more evicts the least recently used, whose stream is told
``evicted`` at its next message (its cache memory is freed at once).  Counts and cache
bytes are kept for ``/v1/pipeline/status``.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from vramancer_node.runtime import KVCache, Sampler


@dataclass(kw_only=True)
class StageSession:
    session_id: bytes
    model_id: str
    epoch: int
    cache: KVCache | None
    """None once evicted."""
    sampler: Sampler | None = None
    """Last stage only."""
    next_step: int = 0
    pending_compute_s: float = 0.0
    """Compute time of prefill chunks not yet reported in a token result."""

    @property
    def evicted(self) -> bool:
        return self.cache is None


@dataclass
class SessionCounters:
    opened_total: int = 0
    evicted_total: int = 0
    refused_total: int = 0
    """Sessions ended with an error sent upstream."""
    by_error: collections.Counter[str] = field(default_factory=collections.Counter)


class SessionTable:
    """Open sessions in least-recently-used order."""

    def __init__(self, sessions_max: int) -> None:
        if sessions_max < 1:
            raise ValueError(f"sessions_max={sessions_max} must be >= 1")
        self.sessions_max = sessions_max
        self._sessions: collections.OrderedDict[bytes, StageSession] = collections.OrderedDict()
        self.counters = SessionCounters()

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, session: StageSession) -> None:
        """Add ``session``, evicting the least recently used ones beyond the bound."""
        if session.session_id in self._sessions:
            raise ValueError("session id already open on this stage")
        while len(self._sessions) >= self.sessions_max:
            _, oldest = self._sessions.popitem(last=False)
            oldest.cache = None
            self.counters.evicted_total += 1
        self._sessions[session.session_id] = session
        self.counters.opened_total += 1

    def touch(self, session: StageSession) -> None:
        if session.session_id in self._sessions:
            self._sessions.move_to_end(session.session_id)

    def close(self, session: StageSession) -> None:
        if self._sessions.get(session.session_id) is session:
            del self._sessions[session.session_id]
        session.cache = None

    def drop_model(self, model_id: str) -> None:
        """Evict every session of ``model_id`` (its stage is being replaced)."""
        for session in [s for s in self._sessions.values() if s.model_id == model_id]:
            self.close(session)
            self.counters.evicted_total += 1

    def cache_bytes(self) -> int:
        return sum(s.cache.nbytes for s in self._sessions.values() if s.cache is not None)
