"""Errors of the placement optimiser, and whose fault each one is.

::

    PlacementError             base class
    ├── ProfileError           the model's config.json is missing a key or holds a bad
    │                          value (the caller's input; also a ValueError)
    └── PlacementInfeasible    the model fits nowhere in the offered memory; the message
                               names the shortfall in GiB

A malformed :class:`~protocol.placement.request.PlacementRequest` (a negative context,
a headroom of 150 %) is a plain ``ValueError`` naming the field, raised when the request
is built, like every other record in ``protocol/``.
"""

from __future__ import annotations

GIB = 1024**3
"""Bytes per GiB: memory in messages is given in GiB, two decimals from 0.01 GiB."""


def gib(value_bytes: int) -> str:
    """``value_bytes`` as ``"12.34 GiB"`` (``"0.000071 GiB"`` below 0.01 GiB)."""
    value = value_bytes / GIB
    return f"{value:.2f} GiB" if value >= 0.01 or value == 0 else f"{value:.6f} GiB"


class PlacementError(Exception):
    """Base class of the errors of ``protocol.placement``."""


class ProfileError(PlacementError, ValueError):
    """A Hugging Face config cannot be profiled; the message names every bad key."""


class PlacementInfeasible(PlacementError):
    """No placement of the model fits the members' memory.

    ``needed_bytes`` is the least memory any placement needs (weights, the KV cache of
    the requested context and, when the model must be split, the extra copy of a tied
    embedding on the last stage); ``available_bytes`` is what the candidate devices
    offer after headroom.  ``shortfall_bytes`` is their difference, or 0 when the total
    would suffice but does not divide into whole layers per device.
    """

    def __init__(self, message: str, *, needed_bytes: int, available_bytes: int) -> None:
        super().__init__(message)
        self.needed_bytes = needed_bytes
        self.available_bytes = available_bytes

    @property
    def shortfall_bytes(self) -> int:
        """Memory missing in total; 0 when the problem is fragmentation, not size."""
        return max(0, self.needed_bytes - self.available_bytes)
