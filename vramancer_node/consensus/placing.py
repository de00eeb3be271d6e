"""Placement through the log: read a model's config, plan with ``place()``, and show
committed placement epochs.

Theory of operation
-------------------
A placement request names a model by its checkpoint directory (or its
``config.json``).  The node that receives it (API or CLI) reads the config and
checks that it can be profiled, then hands the *config itself* — not the path,
which only exists on that machine — to the leader as a :class:`PlaceRequest`.  The
leader runs :func:`plan_epoch`: the members' resources and links from their gossiped
records (``nodes_from_records`` / ``links_from_records``, only members whose
admission is committed and not revoked), the model's previous committed placement
for hysteresis, and :func:`protocol.placement.place`; then proposes the result as the
next :class:`~protocol.control.PlacementEpoch` of that model.  A plan identical to
the committed one commits nothing and answers with the committed epoch.

Model id: the checkpoint directory's name, unless ``config.json`` names the model
in ``_name_or_path`` with a valid model id (``org/name``); an absolute or relative
*path* there is ignored.

A model that fits nowhere raises the optimiser's
:class:`~protocol.placement.PlacementInfeasible`, whose message names the shortfall.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.control import CommittedPlacement, PlacementEpoch, StageRange
from protocol.control.commands import MODEL_CONFIG_CHARS_MAX, check_model_id
from protocol.membership import MemberRecord
from protocol.placement import (
    ModelProfile,
    Placement,
    PlacementRequest,
    Stage,
    links_from_records,
    nodes_from_records,
    place,
)
from protocol.placement.request import CONTEXT_TOKENS_MAX
from protocol.placement.result import PLACEMENT_METHODS, PlacementMethod

CONFIG_FILE_NAME = "config.json"
CONFIG_BYTES_MAX = MODEL_CONFIG_CHARS_MAX
"""A Hugging Face config.json is a few KiB; it travels in the log with the placement."""
NANOSECONDS_PER_SECOND = 1_000_000_000


class PlacementRequestError(ValueError):
    """The request is malformed: unreadable config, bad model id, context or dtype."""


class PlacementRefused(Exception):
    """The placement cannot be committed in the cluster's current state: the model
    fits nowhere (the optimiser's message, naming the memory shortfall), or an
    explicit stage's node is down or its device too small (``explicit.py``)."""


@dataclass(frozen=True, kw_only=True)
class PlaceRequest:
    """What the leader needs to plan a model: its config and the context to reserve."""

    model_id: str
    config_json: str
    context_tokens: int
    dtype: str

    def __post_init__(self) -> None:
        try:
            check_model_id(self.model_id)
        except ValueError as exc:
            raise PlacementRequestError(str(exc)) from exc
        if not isinstance(self.config_json, str) or len(self.config_json) > CONFIG_BYTES_MAX:
            raise PlacementRequestError(
                f"the config must be JSON text of at most {CONFIG_BYTES_MAX}"
            )
        tokens = self.context_tokens
        if isinstance(tokens, bool) or not isinstance(tokens, int):
            raise PlacementRequestError(f"context_tokens must be an int, got {tokens!r:.40}")
        if not 0 < tokens <= CONTEXT_TOKENS_MAX:
            raise PlacementRequestError(f"context_tokens must be in [1, {CONTEXT_TOKENS_MAX}]")
        if not isinstance(self.dtype, str) or not 0 < len(self.dtype) <= 32:
            raise PlacementRequestError("dtype must be a short string such as bf16")

    def to_wire(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "config_json": self.config_json,
            "context_tokens": self.context_tokens,
            "dtype": self.dtype,
        }

    @classmethod
    def from_wire(cls, payload: object) -> PlaceRequest:
        if not isinstance(payload, Mapping) or set(payload) != {
            "model_id",
            "config_json",
            "context_tokens",
            "dtype",
        }:
            raise PlacementRequestError(
                "a place request is {model_id, config_json, context_tokens, dtype}"
            )
        return cls(**{str(k): v for k, v in payload.items()})

    def config(self) -> dict[str, Any]:
        try:
            config = json.loads(self.config_json)
        except ValueError as exc:
            raise PlacementRequestError(f"the model config is not JSON: {exc}") from exc
        if not isinstance(config, dict):
            raise PlacementRequestError("the model config must be a JSON object")
        return config

    def profile(self) -> ModelProfile:
        """The model profile (``ProfileError``, a ``ValueError``, when unusable)."""
        return ModelProfile.from_hf_config(self.config(), self.dtype)


def read_model(path: Path, context_tokens: int, dtype: str) -> PlaceRequest:
    """A place request for the checkpoint directory (or config.json) at ``path``."""
    path = Path(path)
    config_path = (
        path if path.name == CONFIG_FILE_NAME and path.is_file() else path / CONFIG_FILE_NAME
    )
    try:
        with open(config_path, "rb") as handle:
            data = handle.read(CONFIG_BYTES_MAX + 1)
    except OSError as exc:
        raise PlacementRequestError(f"cannot read {config_path}: {exc.strerror or exc}") from exc
    if len(data) > CONFIG_BYTES_MAX:
        raise PlacementRequestError(f"{config_path} is larger than {CONFIG_BYTES_MAX} bytes")
    try:
        text = data.decode("utf-8")
        config = json.loads(text)
    except ValueError as exc:
        raise PlacementRequestError(f"{config_path} is not JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise PlacementRequestError(f"{config_path} must hold a JSON object")
    request = PlaceRequest(
        model_id=model_id_for(config_path.parent, config),
        config_json=text,
        context_tokens=context_tokens,
        dtype=dtype,
    )
    request.profile()  # fail here, on the requesting node, with the config's problems
    return request


def model_id_for(directory: Path, config: Mapping[str, Any]) -> str:
    """The model id (see the module docstring)."""
    named = config.get("_name_or_path")
    if isinstance(named, str) and not named.startswith((".", "/")) and ".." not in named:
        try:
            return check_model_id(named)
        except ValueError:
            pass
    name = directory.resolve().name
    try:
        return check_model_id(name)
    except ValueError as exc:
        raise PlacementRequestError(
            f"the directory name {name!r} is not a usable model id: {exc}"
        ) from exc


def to_placement(epoch: PlacementEpoch) -> Placement:
    """The optimiser's :class:`Placement` for a committed epoch."""
    return Placement(
        stages=tuple(
            Stage(
                node_id=s.node_id,
                device_index=s.device_index,
                first_layer=s.first_layer,
                last_layer_exclusive=s.last_layer_exclusive,
            )
            for s in epoch.stages
        ),
        decode_s_per_token=epoch.decode_ns_per_token / NANOSECONDS_PER_SECOND,
        method=_method(epoch.method),
    )


def _method(recorded: str) -> PlacementMethod:
    """The method of a committed epoch; one committed before methods were recorded
    came from the optimiser."""
    for method in PLACEMENT_METHODS:
        if method == recorded:
            return method
    return "exact"


def plan_epoch(
    request: PlaceRequest,
    records: Iterable[MemberRecord],
    previous: CommittedPlacement | None,
) -> PlacementEpoch | None:
    """The next epoch for ``request`` on ``records``; None when the plan is unchanged.

    Raises ``ProfileError`` / :class:`PlacementRequestError` (bad request) or
    ``PlacementInfeasible`` (fits nowhere).
    """
    records = list(records)
    previous_placement = None if previous is None else to_placement(previous.placement)
    placement = place(
        PlacementRequest(
            profile=request.profile(),
            nodes=nodes_from_records(records),
            links=links_from_records(records),
            context_tokens=request.context_tokens,
            previous=previous_placement,
        )
    )
    memory = [m.total_bytes for m in placement.stage_memory] or [0] * len(placement.stages)
    stages = tuple(
        StageRange(
            node_id=stage.node_id,
            device_index=stage.device_index,
            first_layer=stage.first_layer,
            last_layer_exclusive=stage.last_layer_exclusive,
            memory_bytes=bytes_,
        )
        for stage, bytes_ in zip(placement.stages, memory, strict=True)
    )
    if previous is not None and _same_layout(previous.placement.stages, stages):
        return None
    return PlacementEpoch(
        model_id=request.model_id,
        epoch=1 if previous is None else previous.placement.epoch + 1,
        stages=stages,
        decode_ns_per_token=round(placement.decode_s_per_token * NANOSECONDS_PER_SECOND),
        context_tokens=request.context_tokens,
        dtype=request.dtype,
        model_config=request.config_json,
        method=placement.method,
    )


def replan_request(committed: CommittedPlacement) -> PlaceRequest | None:
    """The request a committed placement was planned from, to plan it again (None if
    the epoch does not carry its model config)."""
    epoch = committed.placement
    if not (epoch.model_config and epoch.context_tokens and epoch.dtype):
        return None
    return PlaceRequest(
        model_id=epoch.model_id,
        config_json=epoch.model_config,
        context_tokens=epoch.context_tokens,
        dtype=epoch.dtype,
    )


def _same_layout(old: tuple[StageRange, ...], new: tuple[StageRange, ...]) -> bool:
    def layout(stages: tuple[StageRange, ...]) -> list[tuple[str, int, int, int]]:
        return [(s.node_id, s.device_index, s.first_layer, s.last_layer_exclusive) for s in stages]

    return layout(old) == layout(new)


def placement_view(committed: CommittedPlacement, names: Mapping[str, str]) -> dict[str, Any]:
    """One committed placement as the API shows it (``vramancer.consensus.placement.v1``)."""
    epoch = committed.placement
    decode_s = epoch.decode_ns_per_token / NANOSECONDS_PER_SECOND
    return {
        "model": epoch.model_id,
        "epoch": epoch.epoch,
        "log_index": committed.index,
        "method": epoch.method or None,
        "num_layers": epoch.num_layers,
        "context_tokens": epoch.context_tokens or None,
        "dtype": epoch.dtype or None,
        "decode_s_per_token": decode_s,
        "tokens_per_s": (1.0 / decode_s) if decode_s > 0 else None,
        "stages": [
            {
                "node_id": s.node_id,
                "node_name": names.get(s.node_id),
                "device_index": s.device_index,
                "first_layer": s.first_layer,
                "last_layer_exclusive": s.last_layer_exclusive,
                "memory_bytes": s.memory_bytes,
            }
            for s in epoch.stages
        ],
    }
