"""The splits other systems would choose, reproduced from their source.

Theory of operation
-------------------
Each baseline returns a *split*: ``(node_id, layers)`` pairs in pipeline order, nodes
given no layers left out.  None of them looks at throughput or links; how good and
whether it fits is judged afterwards by the same cost model and memory limits as our
placement (``placement_costing.py``).

exo, ring memory-weighted
    ``exo/topology/ring_memory_weighted_partitioning_strategy.py`` (exo-explore/exo,
    the pre-1.0 Python tree): nodes sorted by ``(memory, node_id)`` descending, each
    given the fraction ``memory / total`` of ``[0, 1)``, the running end rounded to 5
    decimals; ``exo/topology/partitioning_strategy.py::map_partitions_to_shards``
    turns ``[start, end)`` into layers ``int(start * L) .. int(end * L) - 1``, skips
    empty shards and stretches the last to layer ``L - 1``.  ``memory`` is the
    device's *total* memory in MiB (``device_capabilities.py``: NVML ``total // 2**20``,
    or ``psutil.virtual_memory().total`` for a CPU), not what is free.  The ring runs
    in that order, every node of the topology included.

llama.cpp, default ``--tensor-split``
    ``src/llama-model.cpp::load_tensors`` (ggml-org/llama.cpp): with no
    ``--tensor-split``, each device's weight is its *free* memory
    (``ggml_backend_dev_memory``; an RPC server reports its backend's free memory).
    The weights are accumulated and normalised in ``float``; with ``-ngl`` above the
    layer count, ``act_gpu_layers = L + 1`` and layer ``il`` (``il = L`` is the output
    layer) goes to device ``upper_bound(splits, float(il) / act_gpu_layers)``.  The
    device list puts RPC servers first, in ``--rpc`` order, then the host's own GPU
    (``src/llama.cpp``: "add RPC servers at the front of the list to minimize network
    transfers").  Our assumption for who runs what: the host is the machine with the
    most free memory (the natural one to type the command on), the others are RPC
    servers listed in node-id order.  The token embedding stays on the host's CPU in
    llama.cpp; here, like every split, the first stage holds it (one cost model).
    llama.cpp moves activations between RPC servers through the host (a star); the
    shared cost model charges one direct hop instead, which flatters llama.cpp.

exo 1.x, smallest cycle (``exo_v1``; not asked for by the issue, added because it is
    what exo runs today)
    ``src/exo/master/placement.py::place_instance`` and ``placement_utils.py``
    (exo-explore/exo): among the topology's cycles whose summed ``ram_available``
    covers the model's storage size (weights only), keep those with the fewest nodes,
    take the one with the most ``ram_available`` (the first met on ties), and give
    each node layers in proportion to its ``ram_available`` by largest remainder, at
    least one each (``allocate_layers_proportionally``); a node whose
    ``storage x layers // L`` exceeds its ``ram_available`` makes exo refuse.  On a
    switched LAN every subset of nodes is a cycle; its order here is node-id order
    (exo's comes from its topology graph).  ``ram_available`` is what the device
    reports free.  exo 1.x itself runs on Apple silicon (MLX); only its rule is
    applied here.

even split
    every node in node-id order, ``L // n`` layers each, the first ``L % n`` nodes one
    more (``benchmarks/placement.py``'s naive baseline).
"""

from __future__ import annotations

import itertools
from bisect import bisect_right
from collections.abc import Sequence

import numpy as np

Split = tuple[tuple[str, int], ...]
"""``(node_id, layers)`` in pipeline order, every count positive."""

EXO_ROUND_DIGITS = 5
"""``round(start + memory / total, 5)`` in exo."""
MIB = 2**20


def exo_partitions(memory_mib: dict[str, int]) -> list[tuple[str, float, float]]:
    """exo's ``RingMemoryWeightedPartitioningStrategy.partition``: ``(node, start, end)``."""
    nodes = sorted(memory_mib.items(), key=lambda item: (item[1], item[0]), reverse=True)
    total = sum(memory_mib.values())
    partitions: list[tuple[str, float, float]] = []
    start: float = 0
    for node_id, memory in nodes:
        end = round(start + memory / total, EXO_ROUND_DIGITS)
        partitions.append((node_id, start, end))
        start = end
    return partitions


def exo_shards(partitions: Sequence[tuple[str, float, float]], num_layers: int) -> Split:
    """exo's ``map_partitions_to_shards``, as layer counts."""
    shards: list[tuple[str, int, int]] = []
    for position, (node_id, start, end) in enumerate(partitions):
        start_layer = int(start * num_layers)
        end_layer = int(end * num_layers) - 1
        if position == len(partitions) - 1:
            end_layer = num_layers - 1
        if start_layer <= end_layer:
            shards.append((node_id, start_layer, end_layer))
    if shards and shards[-1][2] < num_layers - 1:
        shards[-1] = (shards[-1][0], shards[-1][1], num_layers - 1)
    for (_, _, before), (node_id, first, _) in itertools.pairwise(shards):
        if first != before + 1:
            raise AssertionError(f"exo shard of {node_id} starts at {first}, not {before + 1}")
    return _contiguous(tuple((node, last - first + 1) for node, first, last in shards), num_layers)


def exo_split(total_bytes: dict[str, int], num_layers: int) -> Split:
    """exo's split of ``num_layers`` over nodes with these total memories."""
    memory_mib = {node_id: value // MIB for node_id, value in total_bytes.items()}
    return exo_shards(exo_partitions(memory_mib), num_layers)


def llamacpp_device_order(free_bytes: dict[str, int]) -> list[str]:
    """RPC servers (every node but the host, node-id order), then the host."""
    host = max(sorted(free_bytes), key=lambda node_id: free_bytes[node_id])
    return [node_id for node_id in sorted(free_bytes) if node_id != host] + [host]


def llamacpp_layer_devices(free_bytes: Sequence[int], num_layers: int) -> list[int]:
    """Device of each layer ``0 .. L`` (``L``: the output layer), in float32 as in C++."""
    splits: list[np.float32] = []
    split_sum = np.float32(0.0)
    for free in free_bytes:
        split_sum = np.float32(split_sum + np.float32(free))
        splits.append(split_sum)
    splits = [np.float32(value / split_sum) for value in splits]
    act_gpu_layers = num_layers + 1
    return [
        bisect_right(splits, np.float32(np.float32(il) / np.float32(act_gpu_layers)))
        for il in range(num_layers + 1)
    ]


def llamacpp_split(free_bytes: dict[str, int], num_layers: int) -> tuple[Split, bool]:
    """llama.cpp's default split, and whether its output layer sat on a device of its own.

    A device that would hold only the output layer is not a stage of our model; the
    output then stays with the last device holding layers (the flag says it happened).
    """
    order = llamacpp_device_order(free_bytes)
    devices = llamacpp_layer_devices([free_bytes[node_id] for node_id in order], num_layers)
    counts = [0] * len(order)
    for device in devices[:num_layers]:
        counts[device] += 1
    output_alone = counts[devices[num_layers]] == 0
    split = tuple((node_id, n) for node_id, n in zip(order, counts, strict=True) if n > 0)
    return _contiguous(split, num_layers), output_alone


def exo_v1_split(
    available_bytes: dict[str, int], storage_bytes: int, num_layers: int
) -> Split | None:
    """exo 1.x's placement, or ``None`` where exo refuses (no cycle fits, too few layers)."""
    ids = sorted(available_bytes)
    for size in range(1, len(ids) + 1):
        cycles = [
            cycle
            for cycle in itertools.combinations(ids, size)
            if sum(available_bytes[node_id] for node_id in cycle) >= storage_bytes
        ]
        if cycles:
            break
    else:
        return None
    chosen = max(cycles, key=lambda cycle: sum(available_bytes[node_id] for node_id in cycle))
    if num_layers < len(chosen):
        return None
    total = sum(available_bytes[node_id] for node_id in chosen)
    counts = exo_allocate_layers(
        [available_bytes[node_id] / total for node_id in chosen], num_layers
    )
    for node_id, layers in zip(chosen, counts, strict=True):
        if storage_bytes * layers // num_layers > available_bytes[node_id]:
            return None
    return _contiguous(tuple(zip(chosen, counts, strict=True)), num_layers)


def exo_allocate_layers(memory_fractions: Sequence[float], total_layers: int) -> list[int]:
    """exo 1.x's ``allocate_layers_proportionally``: largest remainder, one layer at least."""
    count = len(memory_fractions)
    raw = [fraction * total_layers for fraction in memory_fractions]
    result = [int(value) for value in raw]
    by_remainder = sorted(range(count), key=lambda i: raw[i] - result[i], reverse=True)
    for i in range(total_layers - sum(result)):
        result[by_remainder[i]] += 1
    for i in range(count):
        if result[i] == 0:
            largest = max(range(count), key=lambda j: result[j])
            result[largest] -= 1
            result[i] = 1
    return result


def even_split(node_ids: Sequence[str], num_layers: int) -> Split:
    """Every node in node-id order, layers as even as whole layers allow."""
    ordered = sorted(node_ids)
    per, extra = divmod(num_layers, len(ordered))
    split = tuple(
        (node_id, per + (1 if position < extra else 0)) for position, node_id in enumerate(ordered)
    )
    return _contiguous(tuple(stage for stage in split if stage[1] > 0), num_layers)


def _contiguous(split: Split, num_layers: int) -> Split:
    if sum(layers for _, layers in split) != num_layers or any(n < 1 for _, n in split):
        raise AssertionError(f"a baseline split must cover {num_layers} layers: {split}")
    return split
