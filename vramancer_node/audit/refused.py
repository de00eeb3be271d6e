"""Aggregating refused handshakes into a bounded number of audit records.

Theory of operation
-------------------
Anyone can open a TCP connection and fail a handshake, as often as they like.  One
audit record per refusal would let a stranger fill the disk and drown real events, so
refusals are *counted* in memory and :meth:`RefusedHandshakes.drain` turns each
interval's counts into at most :data:`REFUSED_REASONS_MAX` records — one per reason,
with the count and a bounded sample of addresses.  The service drains every
``refused_interval_s``.

Everything is bounded: at most :data:`REFUSED_REASONS_MAX` distinct reasons per interval
(later new reasons are counted under :data:`OTHER_REASON`), at most
:data:`REFUSED_ADDRESSES_MAX` addresses per reason (the rest only counted), reasons and
addresses truncated to :data:`REFUSED_TEXT_CHARS_MAX` characters.  Noting a refusal is
synchronous and O(1), so the handshake path can call it without awaiting anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from crypto.audit import Value
from vramancer_node.audit.kinds import HANDSHAKE_REFUSED

__all__ = [
    "OTHER_REASON",
    "REFUSED_ADDRESSES_MAX",
    "REFUSED_REASONS_MAX",
    "REFUSED_TEXT_CHARS_MAX",
    "RefusedHandshakes",
]

REFUSED_REASONS_MAX = 8
"""Distinct reasons recorded per interval (handshake failures have a handful)."""
REFUSED_ADDRESSES_MAX = 16
"""Addresses listed per reason and interval; the rest are counted."""
REFUSED_TEXT_CHARS_MAX = 128
"""Longest reason or address kept; a peer controls neither."""
OTHER_REASON = "other"
"""Where refusals go once :data:`REFUSED_REASONS_MAX` reasons are in use."""


@dataclass
class _Tally:
    count: int = 0
    addresses: set[str] = field(default_factory=set)
    addresses_omitted: int = 0


class RefusedHandshakes:
    """Counts refused handshakes until the next drain."""

    def __init__(self) -> None:
        self._tallies: dict[str, _Tally] = {}
        self.noted_total = 0
        """Refusals noted since start (a counter for metrics)."""

    def note(self, reason: str, address: str) -> None:
        """Count one refused handshake from ``address`` (host or host:port)."""
        self.noted_total += 1
        reason = _clean(reason) or OTHER_REASON
        if reason not in self._tallies and len(self._tallies) >= REFUSED_REASONS_MAX:
            reason = OTHER_REASON
        tally = self._tallies.setdefault(reason, _Tally())
        tally.count += 1
        address = _clean(address) or "unknown"
        if address in tally.addresses:
            return
        if len(tally.addresses) < REFUSED_ADDRESSES_MAX:
            tally.addresses.add(address)
        else:
            tally.addresses_omitted += 1

    @property
    def pending(self) -> int:
        """Refusals counted since the last drain."""
        return sum(tally.count for tally in self._tallies.values())

    def drain(self, interval_s: int) -> list[tuple[str, dict[str, Value]]]:
        """Return the ``(kind, body)`` records of the interval, reasons in sorted order,
        and start counting afresh."""
        tallies, self._tallies = self._tallies, {}
        records: list[tuple[str, dict[str, Value]]] = []
        for reason, tally in sorted(tallies.items()):
            body: dict[str, Value] = {
                "reason": reason,
                "count": tally.count,
                "addresses": sorted(tally.addresses),
                "interval_s": interval_s,
            }
            if tally.addresses_omitted:
                body["addresses_omitted"] = tally.addresses_omitted
            records.append((HANDSHAKE_REFUSED, body))
        return records


def _clean(text: str) -> str:
    # Peer-influenced text: no control characters, bounded length.
    printable = "".join(char if char.isprintable() else "?" for char in str(text))
    return printable[:REFUSED_TEXT_CHARS_MAX]
