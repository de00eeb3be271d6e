"""The state record every member publishes about itself.

Theory of operation
-------------------
A :class:`MemberRecord` is what the cluster knows about one node: where to reach it,
what it runs and what hardware it brings.  Only its owner writes it.  Two counters
order the versions of a record:

* ``version`` orders the *data*.  The owner bumps it on every change (free memory
  moved, a role was added, new RTT measurements were published).  Data is a function
  of the version: two records of one node with the same version carry the same data,
  so "last writer wins" is simply "highest version wins".
* ``incarnation`` orders *liveness claims* (SWIM).  The owner bumps it only to refute
  a suspicion or a death.  Other members copy a higher incarnation they hear in a
  suspect or dead message into their copy of the record, which is harmless because
  data is keyed by ``version`` alone.

Unknown values are absent (``None`` or empty), never invented.  Every field is
checked at construction (``ValueError`` naming the field), and every container has a
named upper bound so one record always fits one gossip datagram in practice; the core
additionally refuses a local record whose ALIVE message would not fit.

Maps (RTT, bandwidth) are tuples of ``(peer_node_id, value)`` pairs sorted by peer id,
so records stay hashable and encode deterministically.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from protocol.wire import COUNTER_MAX, NODE_ID_CHARS_MAX

ADDRESSES_MAX = 4
ADDRESS_CHARS_MAX = 64
"""``host:port``; a bracketed IPv6 address with port fits."""
ROLES_MAX = 8
ROLE_CHARS_MAX = 32
NAME_CHARS_MAX = 64
"""Longest node name (the certificate allows the same)."""
SOFTWARE_VERSION_CHARS_MAX = 32
DEVICES_MAX = 16
DEVICE_NAME_CHARS_MAX = 64
PEER_VALUES_MAX = 16
"""Entries in ``rtt_ms`` and ``bandwidth_bytes_per_s`` each."""
PROTOCOL_VERSION_MAX = 65_535
HEALTH_MAX = 63
"""Largest awareness score (``awareness_max_multiplier`` is at most 64)."""
PORT_MAX = 65_535

DEVICE_KINDS = ("cuda", "jetson", "mps", "cpu")
"""Device kinds: NVIDIA CUDA GPU, NVIDIA Jetson (unified memory), Apple MPS, CPU."""


def _check_str(field: str, value: object, chars_max: int) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= chars_max:
        raise ValueError(f"{field} must be a non-empty str of at most {chars_max} chars")


def _check_int(field: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{field} must be an int in [{low}, {high}], got {value!r}")


def _check_optional_int(field: str, value: object, low: int, high: int) -> None:
    if value is not None:
        _check_int(field, value, low, high)


def _check_float(field: str, value: object) -> None:
    if not isinstance(value, float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{field} must be a finite float >= 0, got {value!r}")


def _check_str_tuple(field: str, value: object, items_max: int, chars_max: int) -> None:
    if not isinstance(value, tuple) or len(value) > items_max:
        raise ValueError(f"{field} must be a tuple of at most {items_max} items")
    for index, item in enumerate(value):
        _check_str(f"{field}[{index}]", item, chars_max)
    if len(set(value)) != len(value):
        raise ValueError(f"{field} must not repeat items")


def check_address(field: str, value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is ``host:port`` with a valid port."""
    _check_str(field, value, ADDRESS_CHARS_MAX)
    host, sep, port = str(value).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= PORT_MAX:
        raise ValueError(f"{field} must be HOST:PORT with a port in [1, {PORT_MAX}]")


def _check_peer_values(field: str, value: object) -> None:
    if not isinstance(value, tuple) or len(value) > PEER_VALUES_MAX:
        raise ValueError(f"{field} must be a tuple of at most {PEER_VALUES_MAX} pairs")
    previous = ""
    for index, pair in enumerate(value):
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise ValueError(f"{field}[{index}] must be a (node_id, value) pair")
        _check_str(f"{field}[{index}] node_id", pair[0], NODE_ID_CHARS_MAX)
        _check_float(f"{field}[{index}] value", pair[1])
        if pair[0] <= previous:
            raise ValueError(f"{field} must be sorted by node_id without repeats")
        previous = pair[0]


def bumped(counter: int) -> int:
    """``counter + 1``, saturating at :data:`COUNTER_MAX`.

    A peer can claim any incarnation up to the maximum; out-voting it must never
    produce an invalid record (a stuck refutation beats a crash).
    """
    return min(counter + 1, COUNTER_MAX)


def peer_values(mapping: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    """The record form of ``{peer_node_id: value}``: pairs sorted by peer id."""
    return tuple(sorted((peer, float(value)) for peer, value in mapping.items()))


@dataclass(frozen=True, kw_only=True, slots=True)
class DeviceInfo:
    """One compute device of a member."""

    kind: str
    """One of :data:`DEVICE_KINDS`."""
    name: str
    """Human-readable model name, e.g. ``NVIDIA RTX 4090``."""
    memory_total_bytes: int | None = None
    """Memory usable for model weights; ``None`` when the probe could not tell."""
    memory_free_bytes: int | None = None
    """Currently free memory, at most ``memory_total_bytes``; ``None`` when unknown."""
    compute_tflops: float | None = None
    """Estimated dense throughput in TFLOP/s; ``None`` when not measured."""

    def __post_init__(self) -> None:
        if self.kind not in DEVICE_KINDS:
            raise ValueError(f"kind must be one of {DEVICE_KINDS}, got {self.kind!r}")
        _check_str("name", self.name, DEVICE_NAME_CHARS_MAX)
        _check_optional_int("memory_total_bytes", self.memory_total_bytes, 0, COUNTER_MAX)
        _check_optional_int("memory_free_bytes", self.memory_free_bytes, 0, COUNTER_MAX)
        total, free = self.memory_total_bytes, self.memory_free_bytes
        if total is not None and free is not None and free > total:
            raise ValueError("memory_free_bytes must not exceed memory_total_bytes")
        if self.compute_tflops is not None:
            _check_float("compute_tflops", self.compute_tflops)


@dataclass(frozen=True, kw_only=True, slots=True)
class MemberRecord:
    """Versioned, owner-written state of one member; the unit of gossip."""

    node_id: str
    """The member's identity (``crypto.identity`` node id)."""
    incarnation: int = 0
    """SWIM incarnation: bumped by the owner only to refute suspicion or death."""
    version: int = 0
    """Data version: bumped by the owner on every change; highest wins."""
    addresses: tuple[str, ...]
    """Where to reach the member, ``host:port``; the first one is used for gossip."""
    roles: tuple[str, ...] = ()
    """Roles the member offers (e.g. ``worker``, ``api``)."""
    software_version: str | None = None
    """Version of the daemon, when known."""
    protocol_version: int | None = None
    """Highest protocol version the member speaks, when known."""
    devices: tuple[DeviceInfo, ...] = ()
    """Compute devices; empty when none were probed."""
    rtt_ms: tuple[tuple[str, float], ...] = ()
    """EWMA round-trip time in ms from this member to peers, measured by its probes."""
    bandwidth_bytes_per_s: tuple[tuple[str, float], ...] = ()
    """Estimated link bandwidth from this member to peers; may be empty."""
    health: int | None = None
    """Lifeguard awareness score of the member (0 = healthy); ``None`` if unpublished."""
    drain: bool = False
    """True when the operator asked the member to take no new work."""
    name: str | None = None
    """Human-readable node name (``--name``, default the host name); ``None`` if unset."""

    def __post_init__(self) -> None:
        _check_str("node_id", self.node_id, NODE_ID_CHARS_MAX)
        _check_int("incarnation", self.incarnation, 0, COUNTER_MAX)
        _check_int("version", self.version, 0, COUNTER_MAX)
        _check_str_tuple("addresses", self.addresses, ADDRESSES_MAX, ADDRESS_CHARS_MAX)
        if not self.addresses:
            raise ValueError("addresses must name at least one HOST:PORT")
        for index, address in enumerate(self.addresses):
            check_address(f"addresses[{index}]", address)
        _check_str_tuple("roles", self.roles, ROLES_MAX, ROLE_CHARS_MAX)
        if self.name is not None:
            _check_str("name", self.name, NAME_CHARS_MAX)
        if self.software_version is not None:
            _check_str("software_version", self.software_version, SOFTWARE_VERSION_CHARS_MAX)
        _check_optional_int("protocol_version", self.protocol_version, 0, PROTOCOL_VERSION_MAX)
        if not isinstance(self.devices, tuple) or len(self.devices) > DEVICES_MAX:
            raise ValueError(f"devices must be a tuple of at most {DEVICES_MAX} DeviceInfo")
        if not all(isinstance(device, DeviceInfo) for device in self.devices):
            raise ValueError("devices must hold DeviceInfo items")
        _check_peer_values("rtt_ms", self.rtt_ms)
        _check_peer_values("bandwidth_bytes_per_s", self.bandwidth_bytes_per_s)
        _check_optional_int("health", self.health, 0, HEALTH_MAX)
        if not isinstance(self.drain, bool):
            raise ValueError(f"drain must be a bool, got {self.drain!r}")

    @property
    def gossip_address(self) -> str:
        """The address probes and gossip go to."""
        return self.addresses[0]
