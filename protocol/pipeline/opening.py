"""The first message of a ``stage`` session: which model, epoch, placement and stage.

Theory of operation
-------------------
The driver (the node a generation request reached) opens a secure session with
service ``stage`` to the node of stage 0, with this message as the session body.
Each stage node opens the same kind of session to the next stage with the same
message and ``index + 1``, so the chain is built hop by hop and every node checks
for itself that it is the stage the message names, under the epoch it loaded::

    v          int    OPEN_VERSION (1)
    model      str    model id (a checkpoint directory name in runtime.models)
    epoch      int    placement epoch
    session    bin16  session id (the same as in every activation header)
    index      int    which stage of ``stages`` the receiver is
    stages     array  [[node_id, address, first_layer, last_layer_exclusive], ...]
    context    int    KV cache positions every stage reserves for this session
    sampling   map    {temperature: float, top_k: int, top_p: float, seed: int}

Sampling is applied by the last stage only; it is sent to every stage so the message
stays the same along the chain.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import msgpack

from protocol.errors import LocalProtocolError
from protocol.pipeline.activations import POSITION_MAX, SESSION_ID_BYTES
from protocol.pipeline.errors import ActivationHeaderError, UnsupportedVersionError
from protocol.session import SESSION_OPEN_BYTES_MAX
from protocol.wire import COUNTER_MAX, NODE_ID_CHARS_MAX

OPEN_VERSION = 1
ROUTE_STAGES_MAX = 256
"""Stages one session may chain (the open must fit one session-open message)."""
MODEL_ID_CHARS_MAX = 128
ADDRESS_CHARS_MAX = 300
LAYERS_MAX = 1 << 20
TOP_K_MAX = 1 << 24
SEED_MAX = 2**63 - 1
_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_KEYS = frozenset({"v", "model", "epoch", "session", "index", "stages", "context", "sampling"})
_SAMPLING_KEYS = frozenset({"temperature", "top_k", "top_p", "seed"})


@dataclass(frozen=True, kw_only=True, slots=True)
class RouteStage:
    """One stage of the chain: who runs it, where to reach it, which layers."""

    node_id: str
    address: str
    """HOST:PORT of the node's peer listener."""
    first_layer: int
    last_layer_exclusive: int


@dataclass(frozen=True, kw_only=True, slots=True)
class WireSampling:
    """The sampling knobs the last stage needs (stop rules stay with the driver)."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class StageOpen:
    model_id: str
    epoch: int
    session_id: bytes
    index: int
    """The receiver's position in ``stages``."""
    stages: tuple[RouteStage, ...]
    context_tokens: int
    sampling: WireSampling

    @property
    def stage(self) -> RouteStage:
        """The stage the receiver is asked to be."""
        return self.stages[self.index]

    @property
    def is_last(self) -> bool:
        return self.index == len(self.stages) - 1

    def next_hop(self) -> StageOpen:
        """The same open, addressed to the next stage."""
        return replace(self, index=self.index + 1)


def encode_stage_open(opened: StageOpen) -> bytes:
    wire = {
        "v": OPEN_VERSION,
        "model": opened.model_id,
        "epoch": opened.epoch,
        "session": opened.session_id,
        "index": opened.index,
        "stages": [
            [s.node_id, s.address, s.first_layer, s.last_layer_exclusive] for s in opened.stages
        ],
        "context": opened.context_tokens,
        "sampling": {
            "temperature": float(opened.sampling.temperature),
            "top_k": opened.sampling.top_k,
            "top_p": float(opened.sampling.top_p),
            "seed": opened.sampling.seed,
        },
    }
    data: bytes = msgpack.packb(wire, use_bin_type=True)
    try:
        decoded = decode_stage_open(data)
    except ActivationHeaderError as exc:
        raise LocalProtocolError(f"cannot encode stage open: {exc}") from exc
    if decoded != opened:
        raise LocalProtocolError("stage open does not survive a round trip")
    return data


def decode_stage_open(data: bytes) -> StageOpen:
    """Strictly decode a stage open (an ActivationError subclass on anything else)."""
    if len(data) > SESSION_OPEN_BYTES_MAX:
        raise ActivationHeaderError(f"stage open of {len(data)} bytes is too large")
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ActivationHeaderError(f"stage open is not msgpack: {exc}") from exc
    if not isinstance(raw, dict):
        raise ActivationHeaderError("stage open must be a map")
    if raw.get("v") != OPEN_VERSION or isinstance(raw.get("v"), bool):
        raise UnsupportedVersionError(f"stage open version {raw.get('v')!r:.20}")
    if set(raw) != _KEYS:
        raise ActivationHeaderError(f"stage open keys: expected {sorted(_KEYS)}")
    model = raw["model"]
    if not isinstance(model, str) or len(model) > MODEL_ID_CHARS_MAX or not _MODEL_RE.match(model):
        raise ActivationHeaderError(f"model: {model!r:.40} is not a model id")
    session = raw["session"]
    if not isinstance(session, bytes) or len(session) != SESSION_ID_BYTES:
        raise ActivationHeaderError(f"session: expected {SESSION_ID_BYTES} bytes of bin")
    stages = _stages(raw["stages"])
    index = _uint(raw["index"], "index", len(stages) - 1)
    return StageOpen(
        model_id=model,
        epoch=_uint(raw["epoch"], "epoch", COUNTER_MAX),
        session_id=session,
        index=index,
        stages=stages,
        context_tokens=max(1, _uint(raw["context"], "context", POSITION_MAX)),
        sampling=_sampling(raw["sampling"]),
    )


def _uint(value: object, where: str, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise ActivationHeaderError(f"{where}: expected an int in [0, {high}], got {value!r:.40}")
    return value


def _stages(value: object) -> tuple[RouteStage, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= ROUTE_STAGES_MAX:
        raise ActivationHeaderError(f"stages: expected 1 to {ROUTE_STAGES_MAX} stages")
    stages: list[RouteStage] = []
    expected_first = 0
    for position, item in enumerate(value):
        where = f"stages[{position}]"
        if not isinstance(item, list) or len(item) != 4:
            raise ActivationHeaderError(f"{where}: expected [node_id, address, first, last]")
        node_id, address, first, last = item
        if not isinstance(node_id, str) or not 0 < len(node_id) <= NODE_ID_CHARS_MAX:
            raise ActivationHeaderError(f"{where}: bad node id")
        if not isinstance(address, str) or not 0 < len(address) <= ADDRESS_CHARS_MAX:
            raise ActivationHeaderError(f"{where}: bad address")
        first = _uint(first, f"{where} first layer", LAYERS_MAX)
        last = _uint(last, f"{where} last layer", LAYERS_MAX)
        if first != expected_first or last <= first:
            raise ActivationHeaderError(
                f"{where}: layers [{first}, {last}) do not continue at layer {expected_first}"
            )
        expected_first = last
        stages.append(
            RouteStage(
                node_id=node_id, address=address, first_layer=first, last_layer_exclusive=last
            )
        )
    return tuple(stages)


def _sampling(value: object) -> WireSampling:
    if not isinstance(value, dict) or set(value) != _SAMPLING_KEYS:
        raise ActivationHeaderError(f"sampling: expected a map of {sorted(_SAMPLING_KEYS)}")
    temperature, top_p = value["temperature"], value["top_p"]
    if not isinstance(temperature, float) or not math.isfinite(temperature) or temperature < 0:
        raise ActivationHeaderError("sampling.temperature: expected a finite float >= 0")
    if not isinstance(top_p, float) or not 0 < top_p <= 1:
        raise ActivationHeaderError("sampling.top_p: expected a float in (0, 1]")
    return WireSampling(
        temperature=temperature,
        top_k=_uint(value["top_k"], "sampling.top_k", TOP_K_MAX),
        top_p=top_p,
        seed=_uint(value["seed"], "sampling.seed", SEED_MAX),
    )
