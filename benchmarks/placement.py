"""Placement optimiser benchmark: solve time and quality, beside a naive baseline.

Usage::

    python benchmarks/placement.py              # 20 seeded clusters per size, ~10 s
    python benchmarks/placement.py --seeds 5    # quicker, noisier

Prints one JSON document on stdout.  Nothing here asserts on timing.

Theory of operation
-------------------
Clusters come from ``protocol.placement.testing.random_cluster`` (seeded: cluster
``i`` of size ``n`` uses ``Random(i)``) and the model is Mistral-7B in bfloat16 with
4096 tokens of KV cache (14 GiB).  Each device offers a uniform share of the model's
size: ``[max(0.1, 1.2/n), max(0.8, 4/n)]``, so small clusters can usually hold the
model and large ones need a few of their devices.

* ``exact``: 2 to 8 nodes with one device each, solved by ``place`` (exact search);
  median and worst solve time.
* ``heuristic``: 16, 32 and 64 nodes (a fifth with two devices), solved by ``place``
  (heuristic); solve time and cost over ``bounds.lower_bound_s``, a loose bound.
* ``quality_at_8_nodes``: on the same 8-node clusters, the heuristic forced onto the
  problem (``solve_heuristic``) against the exact optimum, side by side with the
  naive baseline: every device in node-id order, layers split evenly (the first
  ``layers % n`` devices take one more), costed by the same model; the baseline
  ignores memory, so how often it would even fit is reported too.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path
from random import Random
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from protocol.placement import ModelProfile, PlacementInfeasible, PlacementRequest, place
from protocol.placement.bounds import lower_bound_s
from protocol.placement.cost import SAMPLED_TOKEN_BYTES, build_problem, decode_s
from protocol.placement.exact import solve_exact
from protocol.placement.heuristic import solve_heuristic
from protocol.placement.testing import random_cluster

MISTRAL_7B = {
    "model_type": "mistral",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 32000,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
CONTEXT_TOKENS = 4096
EXACT_SIZES = (2, 3, 4, 5, 6, 7, 8)
HEURISTIC_SIZES = (16, 32, 64)


def memory_fraction(node_count: int) -> tuple[float, float]:
    return (max(0.1, 1.2 / node_count), max(0.8, 4.0 / node_count))


def cluster(seed: int, node_count: int, profile: ModelProfile, *, single: bool) -> PlacementRequest:
    model_bytes = profile.weight_bytes + CONTEXT_TOKENS * profile.num_layers * (
        profile.kv_bytes_per_token_per_layer
    )
    nodes, links = random_cluster(
        Random(seed),
        node_count,
        model_bytes,
        memory_fraction(node_count),
        0.0 if single else 0.2,
    )
    return PlacementRequest(
        profile=profile, nodes=nodes, links=links, context_tokens=CONTEXT_TOKENS
    )


def naive(request: PlacementRequest) -> tuple[float, bool]:
    """Cost of every device in node-id order with an even split, and whether it fits."""
    profile, context = request.profile, request.context_tokens
    devices = [
        (node.node_id, device)
        for node in sorted(request.nodes, key=lambda n: n.node_id)
        for device in node.devices
        if device.tflops > 0
    ]
    count = len(devices)
    per, extra = divmod(profile.num_layers, count)
    layers = [per + (1 if i < extra else 0) for i in range(count)]
    devices = [d for d, n in zip(devices, layers, strict=True) if n > 0]
    layers = [n for n in layers if n > 0]
    cost, fits = 0.0, True
    keep = 1.0 - request.headroom_fraction
    for position, ((_, device), n) in enumerate(zip(devices, layers, strict=True)):
        flops_per_s = device.tflops * 1e12 * request.compute_efficiency
        cost += n * profile.layer_flops_per_token(context) / flops_per_s
        first, last = position == 0, position == len(devices) - 1
        if last:
            cost += profile.head_flops_per_token / flops_per_s
        need = n * profile.layer_bytes(context) + profile.fixed_bytes(first=first, last=last)
        fits = fits and need <= math.floor(device.free_bytes * keep)
    activation = profile.activation_bytes_per_token
    for (a, _), (b, _) in itertools.pairwise(devices):
        cost += request.links.transfer_s(a, b, activation)
    if len(devices) > 1:
        cost += request.links.transfer_s(devices[-1][0], devices[0][0], SAMPLED_TOKEN_BYTES)
    return cost, fits


def timed_place(request: PlacementRequest) -> tuple[float, Any]:
    started = time.perf_counter()
    try:
        placement = place(request)
    except PlacementInfeasible:
        placement = None
    return time.perf_counter() - started, placement


def summary(values: list[float], digits: int = 4) -> dict[str, float | None]:
    if not values:
        return {"median": None, "max": None}
    return {"median": round(statistics.median(values), digits), "max": round(max(values), digits)}


def exact_rows(profile: ModelProfile, seeds: int) -> list[dict[str, Any]]:
    rows = []
    for size in EXACT_SIZES:
        times, stages = [], []
        for seed in range(seeds):
            elapsed, placement = timed_place(cluster(seed, size, profile, single=True))
            times.append(elapsed)
            if placement is not None:
                stages.append(len(placement.stages))
                assert placement.method == "exact"
        rows.append(
            {
                "nodes": size,
                "solve_s": summary(times, 5),
                "feasible": len(stages),
                "stages_median": statistics.median(stages) if stages else None,
            }
        )
    return rows


def heuristic_rows(profile: ModelProfile, seeds: int) -> list[dict[str, Any]]:
    rows = []
    for size in HEURISTIC_SIZES:
        times, over_bound, over_naive, devices = [], [], [], []
        for seed in range(seeds):
            request = cluster(seed, size, profile, single=False)
            problem = build_problem(request, {})
            devices.append(len(problem.slots))
            elapsed, placement = timed_place(request)
            times.append(elapsed)
            if placement is None:
                continue
            over_bound.append(placement.decode_s_per_token / lower_bound_s(problem))
            over_naive.append(naive(request)[0] / placement.decode_s_per_token)
        rows.append(
            {
                "nodes": size,
                "candidate_devices_median": statistics.median(devices),
                "solve_s": summary(times),
                "feasible": len(over_bound),
                "cost_over_lower_bound": summary(over_bound, 3),
                "naive_cost_over_heuristic": summary(over_naive, 3),
            }
        )
    return rows


def quality_at_8_nodes(profile: ModelProfile, seeds: int) -> dict[str, Any]:
    heuristic_ratio, naive_ratio, naive_fits = [], [], 0
    for seed in range(seeds):
        request = cluster(seed, 8, profile, single=True)
        problem = build_problem(request, {})
        exact = solve_exact(problem)
        heuristic = solve_heuristic(problem)
        if exact is None or heuristic is None:
            continue
        best = decode_s(problem, *exact)
        heuristic_ratio.append(decode_s(problem, *heuristic) / best)
        naive_cost, fits = naive(request)
        naive_ratio.append(naive_cost / best)
        naive_fits += fits
    mean = statistics.fmean
    return {
        "instances": len(heuristic_ratio),
        "heuristic_over_exact": {
            **summary(heuristic_ratio, 4),
            "mean": round(mean(heuristic_ratio), 4) if heuristic_ratio else None,
        },
        "naive_over_exact": {
            **summary(naive_ratio, 3),
            "mean": round(mean(naive_ratio), 3) if naive_ratio else None,
            "fits_memory": naive_fits,
        },
    }


def run(seeds: int) -> dict[str, Any]:
    profile = ModelProfile.from_hf_config(MISTRAL_7B, "auto")
    return {
        "benchmark": "placement",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "model": f"Mistral-7B bfloat16, {CONTEXT_TOKENS} tokens of KV cache",
        "seeds_per_size": seeds,
        "exact": exact_rows(profile, seeds),
        "heuristic": heuristic_rows(profile, seeds),
        "quality_at_8_nodes": quality_at_8_nodes(profile, seeds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="clusters per size (default 20)")
    arguments = parser.parse_args()
    print(json.dumps(run(arguments.seeds), indent=2))


if __name__ == "__main__":
    main()
