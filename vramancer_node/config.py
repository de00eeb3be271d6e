"""Node configuration: one frozen dataclass tree, three presets, one validation pass.

Theory of operation
-------------------
:class:`NodeConfig` is built in three layers, later ones winning:

1. a *preset* — ``lan`` (the default: a home or office network), ``wan`` (nodes
   across the internet: slower, lossier links) or ``local`` (every node on one
   machine: tests and development);
2. a TOML file (``--config FILE``, or the default path the CLI picks);
3. command-line flags, as dotted overrides such as ``{"network.listen": "..."}``.

Every field carries its documentation, unit and allowed range as dataclass
metadata; :func:`validate` walks the tree once and raises :class:`ConfigError`
naming the first field that is out of range, so ``vramancer-node config show``,
the daemon and ``docs/configuration.md`` all speak of the same fields.  Only the CLI
reads files, flags and the environment; the daemon receives a finished
``NodeConfig``.

The membership numbers start from hashicorp/memberlist's ``DefaultLANConfig``,
``DefaultWANConfig`` and ``DefaultLocalConfig`` (config.go).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

DEFAULT_PORT = 7733
"""TCP (secure streams) and UDP (gossip) port of a node."""

PRESETS = ("lan", "wan", "local")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "text", "json")


class ConfigError(Exception):
    """A configuration value is missing, mistyped or out of range.

    ``field`` is the dotted name of the culprit (``membership.probe_interval_s``).
    """

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


def setting(
    default: Any,
    doc: str,
    *,
    unit: str | None = None,
    min: float | None = None,
    max: float | None = None,
    choices: tuple[str, ...] | None = None,
    kind: str | None = None,
) -> Any:
    """A documented config field; ``kind="hostport"`` validates ``HOST:PORT`` strings."""
    metadata = {"doc": doc, "unit": unit, "min": min, "max": max, "choices": choices}
    metadata["kind"] = kind
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True, kw_only=True)
class NodeSection:
    name: str | None = setting(
        None, "Human-readable node name shown in `vramancer peers`; default: the host name."
    )


@dataclass(frozen=True, kw_only=True)
class NetworkSection:
    listen: str = setting(
        f"0.0.0.0:{DEFAULT_PORT}",
        "Address for peer connections (TCP) and gossip (UDP), as HOST:PORT.",
        kind="hostport",
    )
    advertise: str | None = setting(
        None,
        "Address other nodes should use to reach this one, as HOST:PORT; "
        "default: the listen address when it is specific.",
        kind="hostport",
    )
    peers: tuple[str, ...] = setting(
        (), "Peers to contact at start, each HOST:PORT; always used, mDNS or not.", kind="hostport"
    )
    connect_timeout_s: float = setting(
        10.0,
        "Time allowed to open a connection and finish the handshake.",
        unit="s",
        min=0.1,
        max=300,
    )


@dataclass(frozen=True, kw_only=True)
class DiscoverySection:
    mdns: bool = setting(True, "Advertise and browse `_vramancer._tcp.local.` with mDNS.")
    mdns_interface: str | None = setting(
        None, "IP address of the interface mDNS uses; default: all interfaces."
    )


@dataclass(frozen=True, kw_only=True)
class MembershipSection:
    """SWIM/Lifeguard timing.  Defaults are memberlist's DefaultLANConfig."""

    probe_interval_s: float = setting(
        1.0,
        "Time between failure-detector probes of one random member.",
        unit="s",
        min=0.01,
        max=60,
    )
    probe_timeout_s: float = setting(
        0.5,
        "Time to wait for a direct ack before probing indirectly; about the 99th-percentile RTT.",
        unit="s",
        min=0.005,
        max=30,
    )
    indirect_checks: int = setting(
        3, "Members asked to probe a target indirectly after a missed ack.", min=0, max=16
    )
    suspicion_mult: int = setting(
        4,
        "Suspicion timeout = suspicion_mult * log10(max(1, members)) * probe_interval_s.",
        min=1,
        max=100,
    )
    suspicion_max_timeout_mult: int = setting(
        6,
        "Upper bound of the suspicion timeout as a multiple of its minimum (Lifeguard).",
        min=1,
        max=100,
    )
    retransmit_mult: int = setting(
        4, "Gossip retransmits = retransmit_mult * ceil(log10(members + 1)).", min=1, max=100
    )
    gossip_interval_s: float = setting(
        0.2, "Time between gossip rounds.", unit="s", min=0.01, max=60
    )
    gossip_nodes: int = setting(3, "Members gossiped to per round.", min=1, max=64)
    gossip_to_the_dead_s: float = setting(
        30.0,
        "How long dead members still receive gossip, to let them refute.",
        unit="s",
        min=0,
        max=3600,
    )
    push_pull_interval_s: float = setting(
        30.0,
        "Time between full-state anti-entropy exchanges with one member.",
        unit="s",
        min=1,
        max=3600,
    )
    awareness_max_multiplier: int = setting(
        8,
        "Lifeguard: maximum factor the local health multiplier stretches probes by.",
        min=1,
        max=64,
    )
    tcp_timeout_s: float = setting(
        10.0,
        "Timeout of a push-pull exchange over the secure stream.",
        unit="s",
        min=0.1,
        max=300,
    )


@dataclass(frozen=True, kw_only=True)
class AuditSection:
    cosign_interval_s: float = setting(
        300.0,
        "Time between checkpoint exchanges (and cosignatures) with each live member.",
        unit="s",
        min=1,
        max=86400,
    )


@dataclass(frozen=True, kw_only=True)
class ConsensusSection:
    """Raft timing and voter selection.  Defaults are etcd's (100 ms ticks, 10-tick
    elections) and Consul autopilot's (10 s stabilisation, 5 voters)."""

    tick_interval_s: float = setting(
        0.1,
        "Period of the Raft logical clock; every Raft timeout is a whole number of ticks.",
        unit="s",
        min=0.01,
        max=10,
    )
    election_ticks: int = setting(
        10,
        "Election timeout in ticks (drawn in [n, 2n)); a leader is replaced after about"
        " election_ticks * tick_interval_s to twice that.",
        min=3,
        max=1000,
    )
    heartbeat_ticks: int = setting(
        1, "Leader heartbeat period in ticks; below election_ticks.", min=1, max=500
    )
    max_voters: int = setting(
        5,
        "Most members that vote (an odd number); every other member is a learner.",
        min=1,
        max=9,
    )
    stabilisation_s: float = setting(
        10.0,
        "How long a member must have been alive (gossip) before it may become a voter.",
        unit="s",
        min=0,
        max=3600,
    )
    proposal_timeout_s: float = setting(
        10.0,
        "Longest wait for a proposal (admission, revocation, placement) to commit.",
        unit="s",
        min=0.5,
        max=600,
    )


RUNTIME_DTYPES = ("fp32", "bf16", "fp16")
PLACEMENT_SOURCES = ("local", "consensus")


@dataclass(frozen=True, kw_only=True)
class RuntimeSection:
    """Models this node serves and how it runs its pipeline stages."""

    models: tuple[str, ...] = setting(
        (), "Checkpoint directories this node serves; a model's id is its directory name."
    )
    dtype: str = setting("fp32", "Dtype the stages compute in.", choices=RUNTIME_DTYPES)
    device: str = setting(
        "auto", "Device of the stages: auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N, mps."
    )
    context_tokens: int = setting(
        2048,
        "KV cache positions reserved per session (prompt plus generated tokens); at most"
        " the model's max_position_embeddings.",
        unit="tokens",
        min=1,
        max=1 << 24,
    )
    prefill_chunk_tokens: int = setting(
        512, "Prompt tokens sent through the pipeline per chunk.", unit="tokens", min=1, max=65536
    )
    sessions_max: int = setting(
        8, "Sessions holding a KV cache on one stage; more evict the least recently used.",
        min=1, max=4096,
    )  # fmt: skip
    session_idle_timeout_s: float = setting(
        300.0, "A stage session idle this long is closed.", unit="s", min=1, max=86400
    )
    step_timeout_s: float = setting(
        600.0,
        "Longest a driver waits for one token (the first one includes loading every stage).",
        unit="s",
        min=1,
        max=86400,
    )
    threads: int = setting(0, "Torch CPU threads; 0: torch's default.", min=0, max=1024)
    placement_source: str = setting(
        "local",
        "Where placements come from: `local` (this node's own, set through the API or"
        " computed on first use; for development and tests) or `consensus` (committed"
        " through Raft, planned by the leader or given as explicit stages by an admin;"
        " what a cluster runs).",
        choices=PLACEMENT_SOURCES,
    )


@dataclass(frozen=True, kw_only=True)
class ApiSection:
    shutdown_grace_s: float = setting(
        5.0, "Time in-flight API requests get to finish at shutdown.", unit="s", min=0, max=300
    )
    metrics_listen: str | None = setting(
        None,
        "HOST:PORT of a plain HTTP listener serving /metrics to Prometheus (no "
        "authentication: bind it to a monitoring network); default: none, the API "
        "socket serves /metrics.",
        kind="hostport",
    )


@dataclass(frozen=True, kw_only=True)
class LoggingSection:
    level: str = setting("info", "Least severe level written.", choices=LOG_LEVELS)
    format: str = setting(
        "auto",
        "`text` for people, `json` for log shippers, `auto`: text on a TTY, else json.",
        choices=LOG_FORMATS,
    )


@dataclass(frozen=True, kw_only=True)
class NodeConfig:
    """The whole configuration of one node."""

    preset: str = setting("lan", "Base preset the other values start from.", choices=PRESETS)
    node: NodeSection = field(default_factory=NodeSection)
    network: NetworkSection = field(default_factory=NetworkSection)
    discovery: DiscoverySection = field(default_factory=DiscoverySection)
    membership: MembershipSection = field(default_factory=MembershipSection)
    audit: AuditSection = field(default_factory=AuditSection)
    consensus: ConsensusSection = field(default_factory=ConsensusSection)
    runtime: RuntimeSection = field(default_factory=RuntimeSection)
    api: ApiSection = field(default_factory=ApiSection)
    logging: LoggingSection = field(default_factory=LoggingSection)


def _preset_overrides(preset: str) -> dict[str, Any]:
    if preset == "wan":  # memberlist DefaultWANConfig: slower probes, longer patience
        return {
            "network.connect_timeout_s": 30.0,
            "membership.probe_interval_s": 5.0,
            "membership.probe_timeout_s": 3.0,
            "membership.suspicion_mult": 6,
            "membership.gossip_interval_s": 0.5,
            "membership.gossip_nodes": 4,
            "membership.gossip_to_the_dead_s": 60.0,
            "membership.push_pull_interval_s": 60.0,
            "membership.tcp_timeout_s": 30.0,
            "consensus.tick_interval_s": 0.5,  # protocol.raft TICK_INTERVAL_S_WAN
            "consensus.stabilisation_s": 30.0,
            "consensus.proposal_timeout_s": 30.0,
        }
    if preset == "local":  # memberlist DefaultLocalConfig: loopback, fast and reliable
        return {
            "network.listen": f"127.0.0.1:{DEFAULT_PORT}",
            "network.connect_timeout_s": 1.0,
            "discovery.mdns": False,
            "membership.indirect_checks": 1,
            "membership.retransmit_mult": 2,
            "membership.suspicion_mult": 3,
            "membership.probe_timeout_s": 0.2,
            "membership.gossip_interval_s": 0.1,
            "membership.gossip_to_the_dead_s": 15.0,
            "membership.push_pull_interval_s": 15.0,
            "membership.tcp_timeout_s": 1.0,
            "audit.cosign_interval_s": 5.0,
            "consensus.stabilisation_s": 1.0,
            "consensus.proposal_timeout_s": 5.0,
        }
    return {}


def iter_fields(
    cls: type[Any] = NodeConfig, prefix: str = ""
) -> typing.Iterator[tuple[str, dataclasses.Field[Any], Any]]:
    """Yield ``(dotted name, field, type)`` for every leaf setting of the tree."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            yield from iter_fields(hint, f"{prefix}{f.name}.")  # type: ignore[arg-type]
        else:
            yield f"{prefix}{f.name}", f, hint


_SECTIONS = {f.name for f in dataclasses.fields(NodeConfig) if f.name != "preset"}


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against the field's type; TOML gives lists where we keep tuples."""
    args = typing.get_args(hint)
    if type(None) in args:
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(name, f"must be a list of strings, got {value!r}")
        return tuple(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (hint is int and isinstance(value, bool)) or not isinstance(value, hint):
        raise ConfigError(name, f"must be {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


def parse_hostport(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[v6]:PORT`` for IPv6); raise ValueError when malformed."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"{text!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host)
    elif ":" in host:
        raise ValueError(f"{text!r}: write IPv6 addresses as [ADDRESS]:PORT")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"{text!r}: port must be in [0, 65535]")
    return host, port


def _check_range(name: str, value: Any, meta: Mapping[str, Any]) -> None:
    low, high, choices = meta.get("min"), meta.get("max"), meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}; got {value!r}")
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if numeric and ((low is not None and value < low) or (high is not None and value > high)):
        unit = f" {meta['unit']}" if meta.get("unit") else ""
        raise ConfigError(name, f"must be in [{low}, {high}]{unit}; got {value!r}")
    if meta.get("kind") == "hostport" and value is not None:
        for item in value if isinstance(value, tuple) else (value,):
            try:
                parse_hostport(item)
            except ValueError as exc:
                raise ConfigError(name, str(exc)) from exc


def validate(config: NodeConfig) -> NodeConfig:
    """Check every field once; return ``config`` or raise :class:`ConfigError`."""
    for name, f, _hint in iter_fields():
        _check_range(name, get_value(config, name), f.metadata)
    if config.membership.probe_timeout_s >= config.membership.probe_interval_s:
        raise ConfigError(
            "membership.probe_timeout_s",
            f"must be below membership.probe_interval_s ({config.membership.probe_interval_s})",
        )
    if config.consensus.max_voters % 2 == 0:
        raise ConfigError("consensus.max_voters", f"must be odd; got {config.consensus.max_voters}")
    if config.consensus.heartbeat_ticks >= config.consensus.election_ticks:
        raise ConfigError(
            "consensus.heartbeat_ticks",
            f"must be below consensus.election_ticks ({config.consensus.election_ticks})",
        )
    return config


def get_value(config: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


def _flatten(data: Mapping[str, Any]) -> dict[str, Any]:
    """Turn a TOML document into dotted overrides, refusing unknown tables and keys."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key == "preset":
            flat[key] = value
        elif key in _SECTIONS and isinstance(value, Mapping):
            for sub, sub_value in value.items():
                flat[f"{key}.{sub}"] = sub_value
        else:
            raise ConfigError(key, "unknown setting or section")
    return flat


def build_config(overrides: Mapping[str, Any] | None = None) -> NodeConfig:
    """Build and validate a config from dotted ``overrides`` over their preset."""
    overrides = dict(overrides or {})
    preset = overrides.get("preset", "lan")
    if preset not in PRESETS:
        raise ConfigError("preset", f"must be one of {', '.join(PRESETS)}; got {preset!r}")
    merged = {**_preset_overrides(preset), **overrides}
    known = {name: hint for name, _f, hint in iter_fields()}
    sections: dict[str, dict[str, Any]] = {}
    for name, value in merged.items():
        if name not in known:
            raise ConfigError(name, "unknown setting")
        section, _, leaf = name.rpartition(".")
        sections.setdefault(section, {})[leaf] = _coerce(name, value, known[name])
    top = sections.pop("", {})
    hints = typing.get_type_hints(NodeConfig)
    parts = {s: hints[s](**values) for s, values in sections.items()}
    return validate(NodeConfig(**top, **parts))


def load_toml(path: Path) -> dict[str, Any]:
    """Read a TOML config file into dotted overrides (raises ConfigError)."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError("--config", f"file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", f"{path} is not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError("--config", f"cannot read {path}: {exc}") from exc
    return _flatten(data)


def load_config(path: Path | None, flag_overrides: Mapping[str, Any]) -> NodeConfig:
    """Preset, then the TOML file at ``path`` (if any), then flags."""
    file_overrides = load_toml(path) if path is not None else {}
    return build_config({**file_overrides, **flag_overrides})


def config_to_dict(config: NodeConfig) -> dict[str, Any]:
    """The config as plain JSON-able data (tuples become lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return list(value)
        return value

    return {
        k: ({kk: plain(vv) for kk, vv in v.items()} if isinstance(v, dict) else plain(v))
        for k, v in dataclasses.asdict(config).items()
    }
