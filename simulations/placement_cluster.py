"""Seeded heterogeneous clusters for the placement simulation, and their requests.

Theory of operation
-------------------
A cluster of ``n`` nodes, one device each, drawn from an injected ``random.Random``:

1. each node's device is drawn uniformly from
   :data:`~placement_catalogue.DEVICE_PROFILES` and its uplink uniformly from the
   classes that device plausibly has (an A100 server is wired, a Pi is not on 10 GbE);
2. memory in use is drawn from the profile's range, plus, with
   ``BUSY_PROBABILITY``, another workload's share; ``free_bytes`` is the rest;
3. every pair's RTT is the mean of the two uplinks' class RTTs (one leg each) times a
   jitter from ``RTT_JITTER``; its bandwidth is the slower uplink's.

One device per node keeps the baselines faithful: exo reports one device per machine
(the first GPU, ``exo/topology/device_capabilities.py``) and llama.cpp's RPC lists one
backend per server.

:func:`request_for` turns a cluster and a model into the
:class:`~protocol.placement.PlacementRequest` every method is judged by.  The device
throughput it publishes depends on ``throughput``:

``roofline`` (default)
    ``min(peak, bandwidth x efficiency x intensity)`` where ``intensity`` is the model's
    FLOPs per byte read for one decoded token of one layer at the reserved context
    (weights plus KV cache): what a memory-bound decode reaches.  The request's
    ``compute_efficiency`` is then 1: the efficiency is already in the figure.
``peak-fp32``
    what the daemon publishes today (``vramancer_node/devices/compute.py``): peak
    FP32, ``UNMEASURED_DEVICE_TFLOPS`` for a CPU, with the request's default
    ``compute_efficiency``.
"""

from __future__ import annotations

from dataclasses import dataclass
from random import Random

from protocol.placement import DeviceResources, Links, ModelProfile, NodeResources, PlacementRequest
from protocol.placement.request import DEFAULT_COMPUTE_EFFICIENCY, DEFAULT_HEADROOM_FRACTION
from protocol.placement.snapshot import UNMEASURED_DEVICE_TFLOPS
from simulations.placement_catalogue import (
    BUSY_PROBABILITY,
    BUSY_SHARE,
    DECODE_BANDWIDTH_EFFICIENCY,
    DEVICE_PROFILES,
    LINK_CLASSES,
    RTT_JITTER,
    DeviceProfile,
)

THROUGHPUT_MODELS = ("roofline", "peak-fp32")
FLOPS_PER_TFLOP = 1e12
DEVICE_INDEX = 0
"""Every simulated node has one device, index 0."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SimNode:
    """One machine of a simulated cluster."""

    node_id: str
    profile: DeviceProfile
    uplink: str
    """A key of ``LINK_CLASSES``."""
    free_bytes: int
    """What the device reports free (``cudaMemGetInfo``, ``MemAvailable``)."""

    @property
    def total_bytes(self) -> int:
        return self.profile.memory_total_bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class Cluster:
    nodes: tuple[SimNode, ...]
    """In node-id order."""
    links: Links

    @property
    def heterogeneous(self) -> bool:
        """More than one kind of device."""
        return len({node.profile.name for node in self.nodes}) > 1

    def describe(self) -> list[dict[str, object]]:
        return [
            {
                "node_id": node.node_id,
                "device": node.profile.name,
                "uplink": node.uplink,
                "free_gib": round(node.free_bytes / 2**30, 2),
            }
            for node in self.nodes
        ]


def draw_cluster(rng: Random, node_count: int) -> Cluster:
    """A cluster of ``node_count`` nodes, everything derived from ``rng``."""
    nodes: list[SimNode] = []
    for number in range(node_count):
        profile = rng.choice(DEVICE_PROFILES)
        uplink = rng.choice(profile.uplinks)
        low, high = profile.in_use_bytes
        in_use = rng.randint(low, high)
        if rng.random() < BUSY_PROBABILITY:
            in_use += int(profile.memory_total_bytes * rng.uniform(*BUSY_SHARE))
        free = max(0, profile.memory_total_bytes - in_use)
        nodes.append(
            SimNode(node_id=f"node-{number:02d}", profile=profile, uplink=uplink, free_bytes=free)
        )
    rtt_s: dict[tuple[str, str], float] = {}
    bandwidth: dict[tuple[str, str], float] = {}
    for position, a in enumerate(nodes):
        for b in nodes[position + 1 :]:
            leg_a, leg_b = LINK_CLASSES[a.uplink], LINK_CLASSES[b.uplink]
            rtt_s[(a.node_id, b.node_id)] = (
                (leg_a.rtt_s + leg_b.rtt_s) / 2 * rng.uniform(*RTT_JITTER)
            )
            bandwidth[(a.node_id, b.node_id)] = min(
                leg_a.bandwidth_bytes_per_s, leg_b.bandwidth_bytes_per_s
            )
    return Cluster(nodes=tuple(nodes), links=Links.symmetric(rtt_s, bandwidth))


def decode_intensity(model: ModelProfile, context_tokens: int) -> float:
    """FLOPs per byte read when one layer decodes one token at ``context_tokens``."""
    return model.layer_flops_per_token(context_tokens) / model.layer_bytes(context_tokens)


def device_tflops(
    profile: DeviceProfile, model: ModelProfile, context_tokens: int, throughput: str
) -> float:
    """The throughput the request publishes for ``profile`` (module docstring)."""
    if throughput == "peak-fp32":
        fp32 = profile.peak_fp32_tflops
        return UNMEASURED_DEVICE_TFLOPS if fp32 is None else fp32
    if throughput != "roofline":
        raise ValueError(f"throughput must be one of {THROUGHPUT_MODELS}, got {throughput!r}")
    memory_bound = (
        profile.memory_bandwidth_bytes_per_s
        * DECODE_BANDWIDTH_EFFICIENCY
        * decode_intensity(model, context_tokens)
        / FLOPS_PER_TFLOP
    )
    return min(profile.peak_tflops, memory_bound)


def request_for(
    cluster: Cluster,
    model: ModelProfile,
    *,
    context_tokens: int,
    throughput: str = "roofline",
    headroom_fraction: float = DEFAULT_HEADROOM_FRACTION,
) -> PlacementRequest:
    """The placement question every method of the simulation answers."""
    nodes = tuple(
        NodeResources(
            node_id=node.node_id,
            devices=(
                DeviceResources(
                    DEVICE_INDEX,
                    node.profile.kind,
                    node.free_bytes,
                    device_tflops(node.profile, model, context_tokens, throughput),
                ),
            ),
        )
        for node in cluster.nodes
    )
    efficiency = 1.0 if throughput == "roofline" else DEFAULT_COMPUTE_EFFICIENCY
    return PlacementRequest(
        profile=model,
        nodes=nodes,
        links=cluster.links,
        context_tokens=context_tokens,
        headroom_fraction=headroom_fraction,
        compute_efficiency=efficiency,
    )
