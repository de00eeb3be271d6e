"""Seeded random clusters for tests, benchmarks and simulations of the optimiser.

A cluster has ``node_count`` members spread over "sites" (a switch, a room) of about
four nodes: links inside a site are fast (0.1-1 ms, 1 or 10 Gbit/s), links between
sites slow (2-20 ms, 100 Mbit/s to 1 Gbit/s), and a tenth of the pairs are unmeasured
(the ``Links`` defaults apply).  A fifth of the nodes (by default) have two devices.  Devices are
drawn from :data:`DEVICE_CLASSES` and offer a uniform fraction of ``model_bytes``, so
the same generator makes clusters where a model needs a few devices at any size.
Everything derives from the injected ``random.Random``.
"""

from __future__ import annotations

from random import Random

from protocol.placement.resources import DeviceResources, Links, NodeResources

DEVICE_CLASSES: tuple[tuple[str, float, float], ...] = (
    ("cuda", 40.0, 90.0),
    ("cuda", 10.0, 35.0),
    ("jetson", 1.0, 6.0),
    ("mps", 5.0, 15.0),
    ("cpu", 0.3, 2.0),
)
"""``(kind, tflops_low, tflops_high)`` of the device classes drawn from."""
NODES_PER_SITE = 4
SECOND_DEVICE_PROBABILITY = 0.2
UNMEASURED_PAIR_PROBABILITY = 0.1


def random_cluster(
    rng: Random,
    node_count: int,
    model_bytes: int,
    memory_fraction: tuple[float, float] = (0.1, 0.8),
    second_device_probability: float = SECOND_DEVICE_PROBABILITY,
) -> tuple[tuple[NodeResources, ...], Links]:
    """A random cluster of ``node_count`` nodes and the links between them.

    Each device offers ``model_bytes`` times a uniform draw from ``memory_fraction``;
    a node has a second device with probability ``second_device_probability``.
    """
    sites = max(1, node_count // NODES_PER_SITE)
    site_of: dict[str, int] = {}
    nodes: list[NodeResources] = []
    low, high = memory_fraction
    for number in range(node_count):
        node_id = f"node-{number:03d}"
        site_of[node_id] = rng.randrange(sites)
        device_count = 2 if rng.random() < second_device_probability else 1
        devices = []
        for index in range(device_count):
            kind, tflops_low, tflops_high = rng.choice(DEVICE_CLASSES)
            free_bytes = int(model_bytes * rng.uniform(low, high))
            devices.append(
                DeviceResources(index, kind, free_bytes, rng.uniform(tflops_low, tflops_high))
            )
        nodes.append(NodeResources(node_id=node_id, devices=tuple(devices)))
    rtt_s: dict[tuple[str, str], float] = {}
    bandwidth: dict[tuple[str, str], float] = {}
    ids = sorted(site_of)
    for position, a in enumerate(ids):
        for b in ids[position + 1 :]:
            if rng.random() < UNMEASURED_PAIR_PROBABILITY:
                continue
            if site_of[a] == site_of[b]:
                rtt_s[(a, b)] = rng.uniform(0.1e-3, 1e-3)
                bandwidth[(a, b)] = rng.choice((1.25e8, 1.25e9))
            else:
                rtt_s[(a, b)] = rng.uniform(2e-3, 20e-3)
                bandwidth[(a, b)] = rng.uniform(1.25e7, 1.25e8)
    return tuple(nodes), Links.symmetric(rtt_s, bandwidth)
