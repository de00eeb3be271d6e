"""Brute force: every ordered subset of devices with every contiguous layer split.

Theory of operation
-------------------
An independent reference for small instances, sharing nothing with
``protocol/placement/exact.py`` or ``cost.py``: it re-derives, from the request's
public fields only, each device's usable memory, how many layers it can hold as a
first / middle / last / only stage, its seconds per layer and per head, and the hop
costs (``Links.transfer_s``).  Then for every ``k`` from 1 to ``min(devices, layers)``,
every ordered choice of ``k`` devices and every composition of the layers into ``k``
positive parts (``C(L - 1, k - 1)`` of them, vectorised with numpy) it keeps the
cheapest split that fits::

    cost = sum_i count_i * layer_s(device_i) + head_s(last)
         + sum of activation hops + the sampled token's hop back (when k > 1)

The winner is handed back as a split; the caller re-costs it with the shared cost
model (``placement_costing.evaluate``) and checks the two figures agree.

The work is ``sum_k P(n, k) * C(L - 1, k - 1)`` candidate splits; :func:`work` counts
it so the caller can skip instances above a budget.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
from numpy.typing import NDArray

from protocol.placement import PlacementRequest
from simulations.placement_baselines import Split

SAMPLED_TOKEN_BYTES = 4
"""The int32 token id the last stage returns to the first (as the runtime sends it)."""


def work(devices: int, layers: int) -> int:
    """Candidate splits the brute force enumerates."""
    return sum(
        math.perm(devices, k) * math.comb(layers - 1, k - 1)
        for k in range(1, min(devices, layers) + 1)
    )


@functools.lru_cache(maxsize=64)
def compositions(layers: int, parts: int) -> NDArray[np.int64]:
    """Every way to write ``layers`` as ``parts`` positive integers, one per row."""
    if parts == 1:
        return np.array([[layers]], dtype=np.int64)
    cuts = np.array(list(itertools.combinations(range(1, layers), parts - 1)), dtype=np.int64)
    cuts = cuts.reshape(-1, parts - 1)
    rows = cuts.shape[0]
    bounds = np.hstack([np.zeros((rows, 1), np.int64), cuts, np.full((rows, 1), layers, np.int64)])
    result: NDArray[np.int64] = np.diff(bounds, axis=1)
    return result


def brute_force(request: PlacementRequest) -> tuple[Split, float] | None:
    """The cheapest split that fits and its cost by this module's arithmetic, or ``None``."""
    model, context = request.profile, request.context_tokens
    devices = [
        (node.node_id, device)
        for node in request.nodes
        for device in node.devices
        if device.tflops > 0
    ]
    layers = model.num_layers
    keep = 1.0 - request.headroom_fraction
    layer_bytes = model.layer_weight_bytes + context * model.kv_bytes_per_token_per_layer
    layer_flops = model.layer_flops_per_token(context)
    # capacity[d][first][last]: most layers device d holds in that role.
    capacity = []
    layer_s, head_s = [], []
    for _, device in devices:
        usable = math.floor(device.free_bytes * keep)
        capacity.append(
            [
                [(usable - _fixed_bytes(request, first, last)) // layer_bytes for last in (0, 1)]
                for first in (0, 1)
            ]
        )
        flops_per_s = device.tflops * 1e12 * request.compute_efficiency
        layer_s.append(layer_flops / flops_per_s)
        head_s.append(model.head_flops_per_token / flops_per_s)
    links = request.links
    ids = [node_id for node_id, _ in devices]
    activation = model.activation_bytes_per_token
    hop = [[links.transfer_s(a, b, activation) for b in ids] for a in ids]
    back = [[links.transfer_s(a, b, SAMPLED_TOKEN_BYTES) for b in ids] for a in ids]
    best: tuple[float, tuple[int, ...], tuple[int, ...]] | None = None
    for k in range(1, min(len(devices), layers) + 1):
        splits = compositions(layers, k)
        for order in itertools.permutations(range(len(devices)), k):
            caps = np.array(
                [capacity[d][int(p == 0)][int(p == k - 1)] for p, d in enumerate(order)]
            )
            if caps.min() < 1 or caps.sum() < layers:
                continue
            fitting = splits[(splits <= caps).all(axis=1)]
            if fitting.shape[0] == 0:
                continue
            costs = fitting @ np.array([layer_s[d] for d in order])
            row = int(np.argmin(costs))
            cost = float(costs[row]) + head_s[order[-1]]
            cost += sum(hop[a][b] for a, b in itertools.pairwise(order))
            if k > 1:
                cost += back[order[-1]][order[0]]
            if best is None or cost < best[0]:
                best = (cost, order, tuple(int(n) for n in fitting[row]))
    if best is None:
        return None
    cost, order, counts = best
    return tuple((ids[d], n) for d, n in zip(order, counts, strict=True)), cost


def _fixed_bytes(request: PlacementRequest, first: int, last: int) -> int:
    """Embedding on the first stage, norm + head on the last (tied: the matrix again)."""
    model = request.profile
    fixed = model.embedding_bytes if first else 0
    if last:
        fixed += model.head_bytes
        if model.tie_word_embeddings and not first:
            fixed += model.embedding_bytes
    return fixed
