"""The member snapshot the optimiser places onto: devices per node and the links between.

Theory of operation
-------------------
A :class:`NodeResources` lists one member's devices with the memory free for this
model and the device's peak throughput.  :class:`Links` holds the measured RTT and
bandwidth between ordered pairs of nodes.  ``snapshot.py`` builds both from gossiped
:class:`~protocol.membership.record.MemberRecord` s; tests build them by hand.

Missing measurements are not zero, they are pessimistic: a pair with no RTT (or no
bandwidth) in either direction costs :data:`DEFAULT_RTT_S` (or
:data:`DEFAULT_BANDWIDTH_BYTES_PER_S`), a slow LAN, so the optimiser prefers links it
has measured.  A direction that was not measured borrows the reverse direction's
figure first (RTT is symmetric by definition, bandwidth nearly so on a LAN).  Two
devices of one node talk over the host (PCIe or unified memory):
:data:`INTRA_NODE_RTT_S` and :data:`INTRA_NODE_BANDWIDTH_BYTES_PER_S`, also
conservative.
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from protocol.membership.record import DEVICE_KINDS
from protocol.wire import NODE_ID_CHARS_MAX

DEFAULT_RTT_S = 0.010
"""RTT assumed for an unmeasured pair: 10 ms, a congested or wireless LAN."""
DEFAULT_BANDWIDTH_BYTES_PER_S = 12.5e6
"""Bandwidth assumed for an unmeasured pair: 100 Mbit/s."""
INTRA_NODE_RTT_S = 50e-6
"""Handing activations between two devices of one node: a device-to-host round trip."""
INTRA_NODE_BANDWIDTH_BYTES_PER_S = 8e9
"""Between two devices of one node: PCIe 3.0 x8-class, below any x16 or NVLink path."""
DEVICES_PER_NODE_MAX = 16
"""Devices one node may offer (the record's ``DEVICES_MAX``)."""
DEVICE_INDEX_MAX = 1023
TFLOPS_MAX = 1e6
"""Sanity bound on a device's claimed throughput (an exaflop)."""
BYTES_MAX = 2**63 - 1
LINK_PAIRS_MAX = 65_536
"""Measured pairs one ``Links`` may hold: every ordered pair of 256 nodes."""


class DeviceResources(NamedTuple):
    """One device of a node as the optimiser sees it (a plain tuple works too)."""

    device_index: int
    """Index of the device on its node (the runtime's ``cuda:N``)."""
    kind: str
    """One of ``cuda``, ``jetson``, ``mps``, ``cpu``."""
    free_bytes: int
    """Memory this model may use on the device, before the request's headroom."""
    tflops: float
    """Peak dense throughput in TFLOP/s; 0 means the device cannot compute."""


@dataclass(frozen=True, kw_only=True, slots=True)
class NodeResources:
    """One member and its devices."""

    node_id: str
    devices: tuple[DeviceResources, ...]
    """Devices, distinct by ``device_index``; plain 4-tuples are converted."""

    def __post_init__(self) -> None:
        if not isinstance(self.node_id, str) or not 0 < len(self.node_id) <= NODE_ID_CHARS_MAX:
            raise ValueError(f"node_id must be a non-empty str of at most {NODE_ID_CHARS_MAX}")
        devices = tuple(DeviceResources(*device) for device in self.devices)
        if len(devices) > DEVICES_PER_NODE_MAX:
            raise ValueError(f"{self.node_id}: at most {DEVICES_PER_NODE_MAX} devices")
        for device in devices:
            _check_device(self.node_id, device)
        if len({device.device_index for device in devices}) != len(devices):
            raise ValueError(f"{self.node_id}: device_index values must be distinct")
        object.__setattr__(self, "devices", devices)


def _check_device(node_id: str, device: DeviceResources) -> None:
    where = f"{node_id} device {device.device_index!r}"
    index = device.device_index
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= DEVICE_INDEX_MAX:
        raise ValueError(f"{where}: device_index must be an int in [0, {DEVICE_INDEX_MAX}]")
    if device.kind not in DEVICE_KINDS:
        raise ValueError(f"{where}: kind must be one of {DEVICE_KINDS}")
    free = device.free_bytes
    if isinstance(free, bool) or not isinstance(free, int) or not 0 <= free <= BYTES_MAX:
        raise ValueError(f"{where}: free_bytes must be an int in [0, {BYTES_MAX}]")
    tflops = device.tflops
    if not isinstance(tflops, (int, float)) or isinstance(tflops, bool):
        raise ValueError(f"{where}: tflops must be a number")
    if not (math.isfinite(tflops) and 0 <= tflops <= TFLOPS_MAX):
        raise ValueError(f"{where}: tflops must be in [0, {TFLOPS_MAX}]")


NodePair = tuple[str, str]


def _frozen_pairs(
    name: str, values: Mapping[NodePair, float], low: float
) -> Mapping[NodePair, float]:
    if len(values) > LINK_PAIRS_MAX:
        raise ValueError(f"{name} must hold at most {LINK_PAIRS_MAX} pairs")
    checked: dict[NodePair, float] = {}
    for pair, value in values.items():
        if not (
            isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
        ):
            raise ValueError(f"{name} keys must be (source_node_id, target_node_id) pairs")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name}[{pair}] must be a number")
        if not (math.isfinite(value) and value >= low):
            raise ValueError(f"{name}[{pair}] must be finite and >= {low}, got {value}")
        checked[pair] = float(value)
    return types.MappingProxyType(checked)


@dataclass(frozen=True, kw_only=True, slots=True)
class Links:
    """Measured RTT and bandwidth between ordered pairs of nodes, with fallbacks."""

    rtt_s: Mapping[NodePair, float] = field(default_factory=dict)
    """Round-trip time from the first node to the second, in seconds."""
    bandwidth_bytes_per_s: Mapping[NodePair, float] = field(default_factory=dict)
    """Throughput from the first node to the second; at least 1 byte/s when given."""
    default_rtt_s: float = DEFAULT_RTT_S
    default_bandwidth_bytes_per_s: float = DEFAULT_BANDWIDTH_BYTES_PER_S

    def __post_init__(self) -> None:
        object.__setattr__(self, "rtt_s", _frozen_pairs("rtt_s", self.rtt_s, 0.0))
        bandwidth = _frozen_pairs("bandwidth_bytes_per_s", self.bandwidth_bytes_per_s, 1.0)
        object.__setattr__(self, "bandwidth_bytes_per_s", bandwidth)
        if not (math.isfinite(self.default_rtt_s) and self.default_rtt_s >= 0):
            raise ValueError("default_rtt_s must be finite and >= 0")
        default_bandwidth = self.default_bandwidth_bytes_per_s
        if not (math.isfinite(default_bandwidth) and default_bandwidth >= 1.0):
            raise ValueError("default_bandwidth_bytes_per_s must be finite and >= 1")

    @classmethod
    def symmetric(
        cls,
        rtt_s: Mapping[NodePair, float] | None = None,
        bandwidth_bytes_per_s: Mapping[NodePair, float] | None = None,
    ) -> Links:
        """Links where each given pair holds in both directions."""
        return cls(
            rtt_s=_both_ways(rtt_s or {}),
            bandwidth_bytes_per_s=_both_ways(bandwidth_bytes_per_s or {}),
        )

    def rtt_s_between(self, source: str, target: str) -> float:
        """RTT from ``source`` to ``target``, falling back as the module docstring says."""
        if source == target:
            return INTRA_NODE_RTT_S
        return _lookup(self.rtt_s, source, target, self.default_rtt_s)

    def bandwidth_between(self, source: str, target: str) -> float:
        """Bandwidth from ``source`` to ``target`` in bytes/s, with the same fallbacks."""
        if source == target:
            return INTRA_NODE_BANDWIDTH_BYTES_PER_S
        return _lookup(
            self.bandwidth_bytes_per_s, source, target, self.default_bandwidth_bytes_per_s
        )

    def transfer_s(self, source: str, target: str, payload_bytes: int) -> float:
        """Seconds to hand ``payload_bytes`` from ``source`` to ``target``.

        A full RTT plus serialisation: a stage waits for the previous one's frame and
        the stream acknowledges it, so half an RTT would flatter slow links.
        """
        bandwidth = self.bandwidth_between(source, target)
        return self.rtt_s_between(source, target) + payload_bytes / bandwidth


def _lookup(values: Mapping[NodePair, float], source: str, target: str, default: float) -> float:
    found = values.get((source, target))
    if found is None:
        found = values.get((target, source))
    return default if found is None else found


def _both_ways(values: Mapping[NodePair, float]) -> dict[NodePair, float]:
    both: dict[NodePair, float] = {}
    for (source, target), value in values.items():
        both[(source, target)] = value
        both[(target, source)] = value
    return both
