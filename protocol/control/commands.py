"""The commands of the replicated control state machine, as immutable values.

Theory of operation
-------------------
Everything the cluster must agree on travels through the Raft log as one of these
commands (DESIGN.md section 6): who is admitted (and with which certificate), which
certificate serials are revoked, which placement epoch each model runs, and which
other clusters this one is federated with.  The leader's shell builds a command,
encodes it with :mod:`protocol.control.codec` and proposes the bytes; every node
decodes and applies the same bytes in the same order (:mod:`protocol.control.state`).

Constructors check field *types and ranges* only (``ValueError``, the caller's
mistake).  Whether a command makes sense against the current state (a duplicate
admission, an epoch that skips one) is decided by ``apply``, identically on every
node, and recorded as a rejection rather than raised.

:class:`CommandKind` values are on the wire and in every log: append only, never
renumber.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from protocol.placement.result import PLACEMENT_METHODS
from protocol.wire import COUNTER_MAX, NODE_ID_CHARS_MAX

MODEL_ID_CHARS_MAX = 128
"""A model id is a checkpoint directory's name or a config's ``_name_or_path``."""
REASON_CHARS_MAX = 256
"""A revocation reason is a short note for people, not a document."""
ADDRESS_CHARS_MAX = 262
"""``HOST:PORT`` with a 255-byte DNS name or a bracketed IPv6 address."""
FINGERPRINT_CHARS = 52
"""A CA fingerprint: base32 (lowercase, unpadded) of a SHA-256 digest."""
CERTIFICATE_BYTES_MAX = 4096
"""An encoded signed membership certificate is a few hundred bytes."""
PLACEMENT_STAGES_MAX = 1024
"""Stages in one placement epoch (``protocol.placement.result.STAGES_MAX``)."""
LAYERS_MAX = 1 << 20
"""Upper bound of a layer index: far beyond any decoder's depth."""
DEVICE_INDEX_MAX = 1023
"""Devices one node may number."""
MODEL_CONFIG_CHARS_MAX = 128 * 1024
"""A model's ``config.json`` kept with its placement (a Llama config is ~1 KiB)."""
DTYPE_CHARS_MAX = 32
CONTEXT_TOKENS_MAX = 1 << 24
"""Longest context a placement reserves KV cache for (the optimiser's limit)."""

_MODEL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
_FINGERPRINT_RE = re.compile(r"^[a-z2-7]{52}$")


class CommandKind(enum.IntEnum):
    """What a command does.  On the wire: append only, never renumber."""

    ADMIT_MEMBER = 1
    REVOKE = 2
    PLACEMENT_EPOCH = 3
    FEDERATION_LINK_ADD = 4
    FEDERATION_LINK_REMOVE = 5


def check_text(where: str, value: object, chars_max: int, *, empty_ok: bool = False) -> str:
    """Raise ``ValueError`` unless ``value`` is a str of at most ``chars_max`` chars."""
    if not isinstance(value, str) or len(value) > chars_max or (not value and not empty_ok):
        low = 0 if empty_ok else 1
        raise ValueError(f"{where} must be a str of {low} to {chars_max} chars, got {value!r:.60}")
    return value


def check_int(where: str, value: object, low: int, high: int) -> int:
    """Raise ``ValueError`` unless ``value`` is an int in ``[low, high]`` (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{where} must be an int in [{low}, {high}], got {value!r:.60}")
    return value


def check_model_id(value: object) -> str:
    """A model id: 1 to 128 chars of ``[A-Za-z0-9._/-]``, starting alphanumeric."""
    if not isinstance(value, str) or not _MODEL_ID_RE.match(value):
        raise ValueError(
            f"model id must be 1 to {MODEL_ID_CHARS_MAX} chars of [A-Za-z0-9._/-] starting"
            f" with a letter or digit, got {value!r:.60}"
        )
    return value


@dataclass(frozen=True, kw_only=True, slots=True)
class AdmitMember:
    """A node becomes a member with this certificate (its admission is committed)."""

    node_id: str
    """The admitted node; must be the node id of the certificate's public key."""
    certificate: bytes
    """The encoded signed membership certificate the admin issued."""

    def __post_init__(self) -> None:
        check_text("node_id", self.node_id, NODE_ID_CHARS_MAX)
        if not isinstance(self.certificate, bytes) or not (
            0 < len(self.certificate) <= CERTIFICATE_BYTES_MAX
        ):
            raise ValueError(f"certificate must be 1 to {CERTIFICATE_BYTES_MAX} bytes")


@dataclass(frozen=True, kw_only=True, slots=True)
class Revoke:
    """Certificate ``serial`` is refused cluster-wide from the commit on."""

    serial: int
    """The revoked certificate's serial."""
    reason: str
    """Why, for people (may be empty)."""

    def __post_init__(self) -> None:
        check_int("serial", self.serial, 1, COUNTER_MAX)
        check_text("reason", self.reason, REASON_CHARS_MAX, empty_ok=True)


@dataclass(frozen=True, kw_only=True, slots=True, order=True)
class StageRange:
    """One stage of a placement epoch: layers ``[first_layer, last_layer_exclusive)``."""

    node_id: str
    device_index: int
    first_layer: int
    last_layer_exclusive: int
    memory_bytes: int = 0
    """Weights plus KV cache the optimiser planned for the stage (0: not known)."""

    def __post_init__(self) -> None:
        check_text("stage node_id", self.node_id, NODE_ID_CHARS_MAX)
        check_int("device_index", self.device_index, 0, DEVICE_INDEX_MAX)
        check_int("first_layer", self.first_layer, 0, LAYERS_MAX - 1)
        check_int("last_layer_exclusive", self.last_layer_exclusive, 1, LAYERS_MAX)
        check_int("memory_bytes", self.memory_bytes, 0, COUNTER_MAX)
        if self.last_layer_exclusive <= self.first_layer:
            raise ValueError("a stage must hold at least one layer")


@dataclass(frozen=True, kw_only=True, slots=True)
class PlacementEpoch:
    """Model ``model_id`` runs as ``stages`` from ``epoch`` on (previous epoch + 1)."""

    model_id: str
    epoch: int
    """1 for a model's first placement, then +1 per committed change."""
    stages: tuple[StageRange, ...]
    """Pipeline order; contiguous layer ranges from layer 0 (checked at apply)."""
    decode_ns_per_token: int = 0
    """The optimiser's predicted decode time per token (0: not known)."""
    context_tokens: int = 0
    """Tokens of KV cache the plan reserved (0: not known)."""
    dtype: str = ""
    """Weight dtype the plan assumed (empty: not known)."""
    model_config: str = ""
    """The model's ``config.json`` text, so any later leader can re-plan the model
    (empty: not known, the model is only re-planned on request)."""
    method: str = ""
    """How the stages were chosen (``protocol.placement.result.PLACEMENT_METHODS``:
    ``exact`` / ``heuristic`` by the optimiser, ``explicit`` by an operator); empty:
    not recorded (entries written before codec version 2)."""

    def __post_init__(self) -> None:
        check_model_id(self.model_id)
        check_int("epoch", self.epoch, 1, COUNTER_MAX)
        if not isinstance(self.stages, tuple) or not 0 < len(self.stages) <= PLACEMENT_STAGES_MAX:
            raise ValueError(f"stages must be a tuple of 1 to {PLACEMENT_STAGES_MAX} StageRange")
        if not all(isinstance(stage, StageRange) for stage in self.stages):
            raise ValueError("stages must hold StageRange items")
        check_int("decode_ns_per_token", self.decode_ns_per_token, 0, COUNTER_MAX)
        check_int("context_tokens", self.context_tokens, 0, CONTEXT_TOKENS_MAX)
        check_text("dtype", self.dtype, DTYPE_CHARS_MAX, empty_ok=True)
        check_text("model_config", self.model_config, MODEL_CONFIG_CHARS_MAX, empty_ok=True)
        if self.method != "" and self.method not in PLACEMENT_METHODS:
            raise ValueError(
                f"method must be empty or one of {PLACEMENT_METHODS}, got {self.method!r:.40}"
            )

    @property
    def num_layers(self) -> int:
        return self.stages[-1].last_layer_exclusive


@dataclass(frozen=True, kw_only=True, slots=True)
class FederationLink:
    """A link to another cluster: where to reach it and which CA it must show."""

    address: str
    """``HOST:PORT`` of a member of the other cluster."""
    ca_fingerprint: str
    """That cluster's CA fingerprint (``crypto.certs.ca_fingerprint``)."""

    def __post_init__(self) -> None:
        check_text("address", self.address, ADDRESS_CHARS_MAX)
        if ":" not in self.address:
            raise ValueError(f"address must be HOST:PORT, got {self.address!r:.60}")
        if not isinstance(self.ca_fingerprint, str) or not _FINGERPRINT_RE.match(
            self.ca_fingerprint
        ):
            raise ValueError(
                f"ca_fingerprint must be {FINGERPRINT_CHARS} base32 chars,"
                f" got {self.ca_fingerprint!r:.60}"
            )


@dataclass(frozen=True, kw_only=True, slots=True)
class FederationLinkAdd:
    """Link this cluster to another one."""

    link: FederationLink


@dataclass(frozen=True, kw_only=True, slots=True)
class FederationLinkRemove:
    """Remove a link to another cluster."""

    link: FederationLink


Command = AdmitMember | Revoke | PlacementEpoch | FederationLinkAdd | FederationLinkRemove
"""Any control command."""

KIND_OF: dict[type, CommandKind] = {
    AdmitMember: CommandKind.ADMIT_MEMBER,
    Revoke: CommandKind.REVOKE,
    PlacementEpoch: CommandKind.PLACEMENT_EPOCH,
    FederationLinkAdd: CommandKind.FEDERATION_LINK_ADD,
    FederationLinkRemove: CommandKind.FEDERATION_LINK_REMOVE,
}
"""The wire kind of each command class."""
