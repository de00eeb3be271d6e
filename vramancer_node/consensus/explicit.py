"""Explicit placements: stages an operator names, checked like the optimiser's answer.

Theory of operation
-------------------
``POST /v1/placement`` with ``stages`` commits a placement the optimiser did not
choose: the demo's even split over identical CPU nodes (where the optimiser rightly
puts a tiny model on one node), or an operator pinning layers to machines.  The
requesting node checks the stages against its own view of the cluster, in this
order, and each failure is its own error:

1. *Shape* (:class:`PlacementRequestError`, HTTP 400): a list of 1 to
   :data:`~protocol.control.commands.PLACEMENT_STAGES_MAX` objects ``{node_id,
   device_index (default 0), first_layer, last_layer_exclusive}`` and nothing else,
   in pipeline order, covering ``[0, num_hidden_layers)`` of the model contiguously,
   at most one stage per device.
2. *Membership* (400): every stage's node is an admitted member whose certificate is
   not revoked (the committed control state).
3. *Liveness* (:class:`StageUnavailable`, 409): every stage's node is up in this
   node's gossip view (alive or suspect), not draining, and its record lists the
   device index.
4. *Memory* (:class:`StageDoesNotFit`, 409): each stage's weights (its layers, plus
   the embedding on the first stage and the head on the last) and the KV cache of
   ``context_tokens`` fit the device's gossiped free memory after the optimiser's
   headroom (:data:`~protocol.placement.request.DEFAULT_HEADROOM_FRACTION`); the
   message names the stage, the device and the shortfall in GiB.  ``force`` skips
   this check only: gossiped free memory is a snapshot (it may count an older epoch
   of the same model that the new one replaces) and the operator may know better.

The result is the model's next epoch (committed epoch + 1) with ``method =
"explicit"``, each stage's planned memory, the predicted decode time under the
optimiser's cost model over the same links, and the context, dtype and config, so
that a later leader can re-plan the model if a stage's node goes down.  The leader
does not re-plan an explicit placement merely because members come and go (see
:mod:`~vramancer_node.consensus.placementwiring`).  An explicit placement identical
to the committed explicit one commits nothing.

Everything here is pure: the caller passes the committed state and gossip records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import pairwise
from typing import Any

from protocol.control import CommittedPlacement, ControlState, PlacementEpoch, StageRange
from protocol.control.commands import PLACEMENT_STAGES_MAX
from protocol.membership import MemberRecord
from protocol.placement import ModelProfile, links_from_records, nodes_from_records
from protocol.placement.cost import FLOPS_PER_TFLOP, SAMPLED_TOKEN_BYTES
from protocol.placement.errors import gib
from protocol.placement.request import DEFAULT_COMPUTE_EFFICIENCY, DEFAULT_HEADROOM_FRACTION
from vramancer_node.consensus.placing import (
    NANOSECONDS_PER_SECOND,
    PlacementRefused,
    PlacementRequestError,
    PlaceRequest,
)

METHOD_EXPLICIT = "explicit"
STAGE_KEYS_REQUIRED = frozenset({"node_id", "first_layer", "last_layer_exclusive"})
STAGE_KEYS = STAGE_KEYS_REQUIRED | {"device_index"}


class StageUnavailable(PlacementRefused):
    """A stage's node is down, draining, or lacks the named device (HTTP 409)."""


class StageDoesNotFit(PlacementRefused):
    """A stage needs more memory than its device offers (HTTP 409; ``force`` skips)."""

    def __init__(self, message: str, *, shortfall_bytes: int) -> None:
        super().__init__(message)
        self.shortfall_bytes = shortfall_bytes


def parse_stages(value: object) -> tuple[StageRange, ...]:
    """The stages of a request body (memory not known yet); ``PlacementRequestError``."""
    if not isinstance(value, list) or not 0 < len(value) <= PLACEMENT_STAGES_MAX:
        raise PlacementRequestError(
            f"stages must be a list of 1 to {PLACEMENT_STAGES_MAX} objects"
            " {node_id, device_index, first_layer, last_layer_exclusive}"
        )
    stages: list[StageRange] = []
    for number, item in enumerate(value):
        where = f"stages[{number}]"
        if not isinstance(item, dict):
            raise PlacementRequestError(f"{where} must be an object")
        missing = sorted(STAGE_KEYS_REQUIRED - set(item))
        unknown = sorted(str(key) for key in set(item) - STAGE_KEYS)
        if missing or unknown:
            raise PlacementRequestError(
                f"{where}: missing {missing}" if missing else f"{where}: unknown keys {unknown}"
            )
        node_id = item["node_id"]
        if not isinstance(node_id, str) or not node_id:
            raise PlacementRequestError(f"{where}.node_id must be a node id")
        numbers = [item.get("device_index", 0), item["first_layer"], item["last_layer_exclusive"]]
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in numbers):
            raise PlacementRequestError(
                f"{where}: device_index, first_layer and last_layer_exclusive must be ints >= 0"
            )
        device, first, last = numbers
        if last <= first:
            raise PlacementRequestError(f"{where} must hold at least one layer ({first}-{last})")
        try:
            stages.append(
                StageRange(
                    node_id=node_id, device_index=device, first_layer=first,
                    last_layer_exclusive=last,
                )
            )  # fmt: skip
        except ValueError as exc:
            raise PlacementRequestError(f"{where}: {exc}") from exc
    return tuple(stages)


def check_layout(stages: tuple[StageRange, ...], num_layers: int) -> None:
    """Contiguous cover of ``[0, num_layers)``, one stage per device (400s)."""
    expected, devices = 0, set()
    for number, stage in enumerate(stages):
        if stage.first_layer != expected:
            raise PlacementRequestError(
                f"stages[{number}] must start at layer {expected}, not {stage.first_layer}"
                " (stages cover the layers contiguously, in pipeline order)"
            )
        expected = stage.last_layer_exclusive
        device = (stage.node_id, stage.device_index)
        if device in devices:
            raise PlacementRequestError(
                f"stages[{number}]: device {stage.device_index} of {stage.node_id} already"
                " holds a stage (one stage per device)"
            )
        devices.add(device)
    if expected != num_layers:
        raise PlacementRequestError(
            f"the stages end at layer {expected} but the model has {num_layers} layers"
        )


def explicit_epoch(
    request: PlaceRequest,
    stages: tuple[StageRange, ...],
    *,
    control: ControlState,
    up: Mapping[str, MemberRecord],
    force: bool = False,
) -> PlacementEpoch | None:
    """The next epoch of ``request.model_id`` running ``stages`` (see the module
    docstring); None when the committed placement is this explicit one already.

    ``up``: gossip records of the members that are up (alive or suspect), by node id.
    Raises :class:`PlacementRequestError`, :class:`StageUnavailable` or
    :class:`StageDoesNotFit`.
    """
    profile = request.profile()
    check_layout(stages, profile.num_layers)
    for number, stage in enumerate(stages):
        if not control.is_active(stage.node_id):
            raise PlacementRequestError(
                f"stages[{number}]: {stage.node_id} is not an admitted member"
                " (or its certificate is revoked)"
            )
    records = _stage_records(stages, up)
    memory = _stage_memory(profile, request.context_tokens, stages, records, force)
    previous = control.placement(request.model_id)
    if previous is not None and _unchanged(previous, stages):
        return None
    return PlacementEpoch(
        model_id=request.model_id,
        epoch=1 if previous is None else previous.placement.epoch + 1,
        stages=tuple(
            StageRange(
                node_id=s.node_id,
                device_index=s.device_index,
                first_layer=s.first_layer,
                last_layer_exclusive=s.last_layer_exclusive,
                memory_bytes=needed,
            )
            for s, needed in zip(stages, memory, strict=True)
        ),
        decode_ns_per_token=round(
            decode_s(profile, request.context_tokens, stages, records) * NANOSECONDS_PER_SECOND
        ),
        context_tokens=request.context_tokens,
        dtype=request.dtype,
        model_config=request.config_json,
        method=METHOD_EXPLICIT,
    )


def _stage_records(
    stages: tuple[StageRange, ...], up: Mapping[str, MemberRecord]
) -> list[MemberRecord]:
    records = []
    for number, stage in enumerate(stages):
        record = up.get(stage.node_id)
        if record is None:
            raise StageUnavailable(f"stages[{number}]: {stage.node_id} is not up (gossip)")
        if record.drain:
            raise StageUnavailable(f"stages[{number}]: {stage.node_id} is draining")
        if stage.device_index >= len(record.devices):
            raise StageUnavailable(
                f"stages[{number}]: {stage.node_id} has {len(record.devices)} device(s),"
                f" no device {stage.device_index}"
            )
        records.append(record)
    return records


def _stage_memory(
    profile: ModelProfile,
    context_tokens: int,
    stages: tuple[StageRange, ...],
    records: list[MemberRecord],
    force: bool,
) -> list[int]:
    """Bytes each stage needs; raises :class:`StageDoesNotFit` unless ``force``."""
    needs = []
    for number, (stage, record) in enumerate(zip(stages, records, strict=True)):
        layers = stage.last_layer_exclusive - stage.first_layer
        fixed = profile.fixed_bytes(first=number == 0, last=number == len(stages) - 1)
        weights = layers * profile.layer_weight_bytes + fixed
        kv = layers * context_tokens * profile.kv_bytes_per_token_per_layer
        needed = weights + kv
        needs.append(needed)
        free = record.devices[stage.device_index].memory_free_bytes
        usable = math.floor((free or 0) * (1.0 - DEFAULT_HEADROOM_FRACTION))
        if needed > usable and not force:
            offered = (
                "does not publish its free memory"
                if free is None
                else f"offers {gib(usable)} after {DEFAULT_HEADROOM_FRACTION:.0%} headroom"
            )
            raise StageDoesNotFit(
                f"stage {number} does not fit: layers {stage.first_layer}-"
                f"{stage.last_layer_exclusive - 1} need {gib(needed)} (weights {gib(weights)}"
                f" + KV cache {gib(kv)} for {context_tokens} tokens) but device"
                f" {stage.device_index} of {stage.node_id} {offered}: {gib(needed - usable)}"
                ' short (add "force": true to commit it anyway)',
                shortfall_bytes=needed - usable,
            )
    return needs


def decode_s(
    profile: ModelProfile,
    context_tokens: int,
    stages: tuple[StageRange, ...],
    records: list[MemberRecord],
) -> float:
    """Predicted decode seconds per token, under the optimiser's cost model."""
    nodes = {node.node_id: node for node in nodes_from_records(records)}
    layer_flops = profile.layer_flops_per_token(context_tokens)
    compute = 0.0
    tflops = 0.0
    for stage in stages:
        node = nodes.get(stage.node_id)
        tflops = next(
            (d.tflops for d in node.devices if d.device_index == stage.device_index), 0.0
        ) if node is not None else 0.0  # fmt: skip
        if tflops <= 0:
            return 0.0  # a device without throughput: not known
        flops_per_s = tflops * FLOPS_PER_TFLOP * DEFAULT_COMPUTE_EFFICIENCY
        compute += (stage.last_layer_exclusive - stage.first_layer) * layer_flops / flops_per_s
    compute += profile.head_flops_per_token / (
        tflops * FLOPS_PER_TFLOP * DEFAULT_COMPUTE_EFFICIENCY
    )
    if len(stages) < 2:
        return compute
    links = links_from_records(records)
    activation = profile.activation_bytes_per_token
    hops = sum(links.transfer_s(a.node_id, b.node_id, activation) for a, b in pairwise(stages))
    back = links.transfer_s(stages[-1].node_id, stages[0].node_id, SAMPLED_TOKEN_BYTES)
    return compute + hops + back


def _unchanged(previous: CommittedPlacement, stages: tuple[StageRange, ...]) -> bool:
    def layout(items: tuple[StageRange, ...]) -> list[Any]:
        return [(s.node_id, s.device_index, s.first_layer, s.last_layer_exclusive) for s in items]

    committed = previous.placement
    return committed.method == METHOD_EXPLICIT and layout(committed.stages) == layout(stages)
