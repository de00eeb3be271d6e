"""The optimiser's inputs from gossiped member records.

Theory of operation
-------------------
Each :class:`~protocol.membership.record.MemberRecord` becomes one
:class:`NodeResources`, its devices numbered by their position in ``devices`` (the
order the owner's probes list them).  What a record leaves unknown is not invented
where it would overcommit, and made pessimistic where the optimiser needs a number:

* unknown free memory (``memory_free_bytes is None``) offers 0 bytes;
* unknown throughput (``compute_tflops is None``) counts as
  :data:`UNMEASURED_DEVICE_TFLOPS`, a small CPU's worth, so such a device is used
  only when memory demands it;
* a member that asked to be drained takes no new stages and is left out, so its
  running stages move elsewhere (they no longer fit, and hysteresis only keeps a
  placement that does).

RTT (ms in the record) and bandwidth come from the record of the node that measured
them: ``rtt_ms`` of A holding ``(B, x)`` is the A -> B entry.  A bandwidth of 0 is
(below 1 byte/s) is taken as "not measured" and left to ``Links``' fallbacks.
"""

from __future__ import annotations

from collections.abc import Iterable

from protocol.membership.record import MemberRecord
from protocol.placement.resources import DeviceResources, Links, NodeResources

UNMEASURED_DEVICE_TFLOPS = 0.1
"""Throughput assumed for a device whose probe could not measure it."""
MILLISECONDS_PER_SECOND = 1000.0


def nodes_from_records(
    records: Iterable[MemberRecord], *, unmeasured_tflops: float = UNMEASURED_DEVICE_TFLOPS
) -> tuple[NodeResources, ...]:
    """Resources of every member not draining, in node-id order."""
    nodes: list[NodeResources] = []
    for record in sorted(records, key=lambda r: r.node_id):
        if record.drain:
            continue
        devices = tuple(
            DeviceResources(
                device_index=index,
                kind=device.kind,
                free_bytes=device.memory_free_bytes or 0,
                tflops=(
                    unmeasured_tflops if device.compute_tflops is None else device.compute_tflops
                ),
            )
            for index, device in enumerate(record.devices)
        )
        nodes.append(NodeResources(node_id=record.node_id, devices=devices))
    return tuple(nodes)


def links_from_records(records: Iterable[MemberRecord]) -> Links:
    """RTT and bandwidth between members, as each measured them."""
    rtt_s: dict[tuple[str, str], float] = {}
    bandwidth: dict[tuple[str, str], float] = {}
    for record in records:
        for peer, value_ms in record.rtt_ms:
            rtt_s[(record.node_id, peer)] = value_ms / MILLISECONDS_PER_SECOND
        for peer, value in record.bandwidth_bytes_per_s:
            if value >= 1.0:
                bandwidth[(record.node_id, peer)] = value
    return Links(rtt_s=rtt_s, bandwidth_bytes_per_s=bandwidth)
