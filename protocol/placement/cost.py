"""The cost model: candidate devices, memory per stage, decode seconds per token.

Theory of operation
-------------------
:func:`build_problem` turns a request into a :class:`Problem`: the candidate devices
(*slots*) in ``(node_id, device_index)`` order, each with its usable memory, how many
layers it can hold in each role, and its seconds per layer; plus two matrices of hop
costs between slots.  Both search strategies (``exact.py``, ``heuristic.py``) work on
slot indices only.

Memory.  A device offers ``usable = floor((free_bytes + credit) * (1 - headroom))``
(``credit``: what the model's resident previous stage holds there).  A stage of ``m``
layers needs ``m * (layer weights + context_tokens * KV per token per layer)`` plus
its fixed part: the embedding on the first stage, the head on the last
(``ModelProfile.fixed_bytes``).  Layers are identical in this model family, so a slot's
memory reduces to a *capacity* in whole layers per role: middle, first, last, both.
A device whose middle capacity is 0 cannot hold a single layer and is dropped, as is
one with no throughput.

Time per decoded token (the objective)::

    decode_s = sum over stages  m_i * layer_s(device_i)          compute
             + head_s(last device)                               final norm + lm_head
             + sum over hops    rtt_s + activation_bytes / bandwidth
             + rtt_s + SAMPLED_TOKEN_BYTES / bandwidth           last -> first, if split

with ``layer_s = layer_flops(context) / (tflops * 1e12 * compute_efficiency)``: every
layer is costed at the full reserved context (the slowest token of the session).  The
sampled token goes back to the first stage, which embeds it for the next step, so a
split model pays one more hop per token than it has boundaries.

The layer split for a given device order has a closed form.  Hop costs depend on the
order only and compute is linear in each stage's layer count, so the "dynamic
programme over layer cuts" reduces to: give every stage one layer, then hand the rest
to the stages with the smallest ``layer_s`` first, each up to its capacity
(:func:`allocate`; optimal for a separable linear cost under box constraints, and ties
go to the device first in node-id order).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

from protocol.placement.profile import ModelProfile
from protocol.placement.request import PlacementRequest
from protocol.placement.result import Placement, PlacementMethod, Stage, StageMemory

SAMPLED_TOKEN_BYTES = 4
"""The sampled token id (int32) the last stage returns to the first."""
FLOPS_PER_TFLOP = 1e12
CANDIDATE_DEVICES_MAX = 256
"""Slots a problem keeps; above it the largest (then fastest) devices are kept."""

ROLE_MIDDLE, ROLE_FIRST, ROLE_LAST, ROLE_BOTH = 0, 1, 2, 3
"""Index into :attr:`Slot.capacity`: role bits ``first | last << 1``."""

DeviceKey = tuple[str, int]
"""``(node_id, device_index)``."""


@dataclass(frozen=True, slots=True)
class Slot:
    """One candidate device."""

    node_id: str
    device_index: int
    usable_bytes: int
    capacity: tuple[int, int, int, int]
    """Most layers the device holds as a middle, first, last, or only stage."""
    layer_s: float
    """Compute seconds per layer per token."""
    head_s: float
    """Compute seconds of the final norm and ``lm_head`` per token."""

    @property
    def key(self) -> DeviceKey:
        return (self.node_id, self.device_index)


@dataclass(frozen=True, slots=True)
class Problem:
    """A request reduced to numbers, with slots in node-id order."""

    profile: ModelProfile
    context_tokens: int
    slots: tuple[Slot, ...]
    hop_s: tuple[tuple[float, ...], ...]
    """``hop_s[i][j]``: activation hand-over from slot ``i`` to slot ``j``."""
    return_s: tuple[tuple[float, ...], ...]
    """``return_s[i][j]``: sampled token from slot ``i`` (last) to slot ``j`` (first)."""
    headroom_fraction: float
    available_bytes: int
    """Usable memory of every device able to compute, candidate or not."""
    largest_usable_bytes: int
    devices_offered: int
    """Devices able to compute, before dropping those too small for a layer."""

    @property
    def num_layers(self) -> int:
        return self.profile.num_layers

    @property
    def layer_kv_bytes(self) -> int:
        return self.context_tokens * self.profile.kv_bytes_per_token_per_layer

    @property
    def layer_bytes(self) -> int:
        return self.profile.layer_weight_bytes + self.layer_kv_bytes

    def fixed_bytes(self, role: int) -> int:
        return self.profile.fixed_bytes(first=bool(role & 1), last=bool(role & 2))


def role_of(position: int, stages: int) -> int:
    """Role of the stage at ``position`` in a pipeline of ``stages``."""
    return (position == 0) | ((position == stages - 1) << 1)


def build_problem(request: PlacementRequest, credit_bytes: Mapping[DeviceKey, int]) -> Problem:
    """Reduce ``request`` to a :class:`Problem`; ``credit_bytes`` is added to free memory."""
    profile, context = request.profile, request.context_tokens
    layer_bytes = profile.layer_bytes(context)
    fixed = [profile.fixed_bytes(first=bool(r & 1), last=bool(r & 2)) for r in range(4)]
    layer_flops = profile.layer_flops_per_token(context)
    keep = 1.0 - request.headroom_fraction
    slots: list[Slot] = []
    available = largest = offered = 0
    for node in sorted(request.nodes, key=lambda n: n.node_id):
        for device in sorted(node.devices):
            if device.tflops <= 0:
                continue
            free = device.free_bytes + credit_bytes.get((node.node_id, device.device_index), 0)
            usable = math.floor(free * keep)
            available += usable
            largest = max(largest, usable)
            offered += 1
            capacity = tuple(
                max(0, min(profile.num_layers, (usable - fixed[r]) // layer_bytes))
                for r in range(4)
            )
            if capacity[ROLE_MIDDLE] < 1:
                continue
            flops_per_s = device.tflops * FLOPS_PER_TFLOP * request.compute_efficiency
            slots.append(
                Slot(
                    node_id=node.node_id,
                    device_index=device.device_index,
                    usable_bytes=usable,
                    capacity=(capacity[0], capacity[1], capacity[2], capacity[3]),
                    layer_s=layer_flops / flops_per_s,
                    head_s=profile.head_flops_per_token / flops_per_s,
                )
            )
    if len(slots) > CANDIDATE_DEVICES_MAX:
        kept = sorted(slots, key=lambda s: (-s.capacity[ROLE_MIDDLE], s.layer_s, s.key))
        slots = sorted(kept[:CANDIDATE_DEVICES_MAX], key=lambda s: s.key)
    activation = profile.activation_bytes_per_token
    links = request.links
    hop = tuple(
        tuple(links.transfer_s(a.node_id, b.node_id, activation) for b in slots) for a in slots
    )
    back = tuple(
        tuple(links.transfer_s(a.node_id, b.node_id, SAMPLED_TOKEN_BYTES) for b in slots)
        for a in slots
    )
    return Problem(
        profile=profile,
        context_tokens=context,
        slots=tuple(slots),
        hop_s=hop,
        return_s=back,
        headroom_fraction=request.headroom_fraction,
        available_bytes=available,
        largest_usable_bytes=largest,
        devices_offered=offered,
    )


def restrict(problem: Problem, indices: Sequence[int]) -> Problem:
    """``problem`` over the slots at ``indices`` only (kept in node-id order)."""
    kept = sorted(set(indices))
    return dataclasses.replace(
        problem,
        slots=tuple(problem.slots[i] for i in kept),
        hop_s=tuple(tuple(problem.hop_s[i][j] for j in kept) for i in kept),
        return_s=tuple(tuple(problem.return_s[i][j] for j in kept) for i in kept),
    )


def capacities(problem: Problem, sequence: Sequence[int]) -> list[int] | None:
    """Layers each stage of ``sequence`` can hold, or ``None`` if one holds none."""
    stages = len(sequence)
    caps: list[int] = []
    for position, index in enumerate(sequence):
        cap = problem.slots[index].capacity[role_of(position, stages)]
        if cap < 1:
            return None
        caps.append(cap)
    return caps


def allocate(problem: Problem, sequence: Sequence[int]) -> tuple[int, ...] | None:
    """Cheapest layer counts for the devices of ``sequence`` in that order, or ``None``.

    One layer each, then the rest to the fastest devices first (ties: the one earlier
    in node-id order), each up to its capacity in its role.
    """
    stages, layers = len(sequence), problem.num_layers
    if not 0 < stages <= layers:
        return None
    caps = capacities(problem, sequence)
    if caps is None or sum(caps) < layers:
        return None
    counts = [1] * stages
    remaining = layers - stages
    slots = problem.slots
    for position in sorted(range(stages), key=lambda p: (slots[sequence[p]].layer_s, sequence[p])):
        if remaining == 0:
            break
        extra = min(caps[position] - 1, remaining)
        counts[position] += extra
        remaining -= extra
    return tuple(counts)


def compute_s(problem: Problem, sequence: Sequence[int], counts: Sequence[int]) -> float:
    """Compute seconds per token: every stage's layers plus the head on the last."""
    slots = problem.slots
    total = sum(count * slots[index].layer_s for index, count in zip(sequence, counts, strict=True))
    return total + slots[sequence[-1]].head_s


def transfer_s(problem: Problem, sequence: Sequence[int]) -> float:
    """Hop seconds per token: activations along the pipeline, the token back."""
    if len(sequence) < 2:
        return 0.0
    hops = sum(problem.hop_s[a][b] for a, b in pairwise(sequence))
    return hops + problem.return_s[sequence[-1]][sequence[0]]


def decode_s(problem: Problem, sequence: Sequence[int], counts: Sequence[int]) -> float:
    """The objective: decode seconds per token of ``sequence`` with ``counts`` layers."""
    return compute_s(problem, sequence, counts) + transfer_s(problem, sequence)


def evaluate(problem: Problem, sequence: Sequence[int]) -> tuple[float, tuple[int, ...]] | None:
    """Best cost and layer counts for a device order, or ``None`` when it cannot hold the model."""
    counts = allocate(problem, sequence)
    if counts is None:
        return None
    return decode_s(problem, sequence, counts), counts


def fits(problem: Problem, sequence: Sequence[int], counts: Sequence[int]) -> bool:
    """Whether ``counts`` layers per stage fit the devices of ``sequence``."""
    if len(sequence) != len(counts) or sum(counts) != problem.num_layers:
        return False
    caps = capacities(problem, sequence)
    return caps is not None and all(0 < c <= cap for c, cap in zip(counts, caps, strict=True))


def to_placement(
    problem: Problem, sequence: Sequence[int], counts: Sequence[int], method: PlacementMethod
) -> Placement:
    """The :class:`Placement` of ``sequence`` with ``counts`` layers per stage."""
    stages: list[Stage] = []
    memory: list[StageMemory] = []
    first_layer = 0
    for position, (index, count) in enumerate(zip(sequence, counts, strict=True)):
        slot = problem.slots[index]
        stages.append(
            Stage(
                node_id=slot.node_id,
                device_index=slot.device_index,
                first_layer=first_layer,
                last_layer_exclusive=first_layer + count,
            )
        )
        first_layer += count
        fixed = problem.fixed_bytes(role_of(position, len(sequence)))
        memory.append(
            StageMemory(
                weight_bytes=count * problem.profile.layer_weight_bytes + fixed,
                kv_cache_bytes=count * problem.layer_kv_bytes,
                usable_bytes=slot.usable_bytes,
            )
        )
    compute = compute_s(problem, sequence, counts)
    transfer = transfer_s(problem, sequence)
    return Placement(
        stages=tuple(stages),
        stage_memory=tuple(memory),
        decode_s_per_token=compute + transfer,
        compute_s_per_token=compute,
        transfer_s_per_token=transfer,
        method=method,
    )
