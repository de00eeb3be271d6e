"""``vramancer-node``: run and inspect the daemon of this machine.

Commands: ``join`` (run the node in the foreground), ``identity show|init``,
``config show``, ``doctor`` (is this machine ready, is its node well), ``version``.
"""

from __future__ import annotations

import base64
import functools
from pathlib import Path
from typing import Any, NoReturn

import typer

from cli.common import (
    EXIT_ERROR,
    JSON_OPTION,
    STATE_DIR_OPTION,
    default_config_file,
    fail,
    print_fields,
    print_json,
    print_table,
    read_secret_file,
    resolve_state_dir,
    run_app,
)
from cli.demo import demo
from crypto.tokens import TokenError, parse_token
from vramancer_node import PROTOCOL_VERSION, __version__
from vramancer_node.config import (
    PRESETS,
    ConfigError,
    NodeConfig,
    config_to_dict,
    iter_fields,
    load_config,
)
from vramancer_node.identity import IdentityFileError, create_identity, load_identity

app = typer.Typer(
    help="Run this machine's VRAMancer node.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
identity_app = typer.Typer(help="The node's Ed25519 identity.", no_args_is_help=True)
config_app = typer.Typer(help="The effective configuration.", no_args_is_help=True)
app.add_typer(identity_app, name="identity")
app.add_typer(config_app, name="config")
app.command("demo")(demo)

CONFIG_OPTION = typer.Option(
    None,
    "--config",
    help="TOML config file [default: /etc/vramancer/node.toml as a service, else the "
    "user's config dir; a missing default file is fine].",
    show_default=False,
)
PRESET_OPTION = typer.Option(None, "--preset", help=f"Preset: {', '.join(PRESETS)}.")
PASSPHRASE_OPTION = typer.Option(
    None,
    "--passphrase-file",
    help="File whose first line is the passphrase sealing the node key.",
    show_default=False,
)


def _load_config(config_file: Path | None, overrides: dict[str, Any]) -> NodeConfig:
    path = config_file
    if path is None:
        default = default_config_file()
        try:
            path = default if default.exists() else None
        except OSError as exc:  # e.g. another user's HOME: say so, do not guess
            fail(f"cannot check the default config file {default}: {exc.strerror}; use --config")
    try:
        return load_config(path, {k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        fail(f"invalid configuration: {exc}")


def _load_identity(state_dir: Path, passphrase_file: Path | None) -> Any:
    try:
        return load_identity(state_dir, read_secret_file(passphrase_file, "passphrase"))
    except IdentityFileError as exc:
        fail(str(exc))


@app.command()
def join(
    state_dir: Path | None = STATE_DIR_OPTION,
    config_file: Path | None = CONFIG_OPTION,
    preset: str | None = PRESET_OPTION,
    listen: str | None = typer.Option(None, "--listen", help="HOST:PORT for peer traffic."),
    peer: list[str] | None = typer.Option(
        None, "--peer", help="HOST:PORT of a member to contact (repeatable)."
    ),
    token: str | None = typer.Option(
        None, "--token", help="Join token from `vramancer token create` (first join only)."
    ),
    name: str | None = typer.Option(None, "--name", help="Node name [default: host name]."),
    no_mdns: bool = typer.Option(False, "--no-mdns", help="Do not use mDNS discovery."),
    mdns_interface: str | None = typer.Option(
        None, "--mdns-interface", help="IP address of the interface mDNS uses [default: all]."
    ),
    metrics: str | None = typer.Option(
        None, "--metrics", help="HOST:PORT serving /metrics over HTTP for Prometheus."
    ),
    log_format: str | None = typer.Option(None, "--log-format", help="text, json or auto."),
    log_level: str | None = typer.Option(None, "--log-level", help="debug, info, warning..."),
    passphrase_file: Path | None = PASSPHRASE_OPTION,
    model_dir: list[Path] | None = typer.Option(
        None, "--model-dir", help="A checkpoint directory to serve (repeatable; runtime.models)."
    ),
) -> None:
    """Run the node in the foreground until SIGINT or SIGTERM."""
    import trio

    from vramancer_node.cluster import ClusterStateError
    from vramancer_node.daemon import run_daemon
    from vramancer_node.enrolment import StartupError
    from vramancer_node.identity import ensure_state_dir, load_or_create_identity
    from vramancer_node.logs import (
        configure_logging,
        get_logger,
        new_trace_id,
        node_id_var,
        trace_id_var,
    )
    from vramancer_node.metrics.server import MetricsListenError
    from vramancer_node.statelock import StateLockedError

    notifier = _systemd_notifier()
    config = _load_config(
        config_file,
        {
            "preset": preset,
            "network.listen": listen,
            "network.peers": peer or None,
            "node.name": name,
            "discovery.mdns": False if no_mdns else None,
            "discovery.mdns_interface": mdns_interface,
            "api.metrics_listen": metrics,
            "logging.format": log_format,
            "logging.level": log_level,
            "runtime.models": [str(p.resolve()) for p in model_dir] if model_dir else None,
        },
    )
    state = resolve_state_dir(state_dir)
    configure_logging(config.logging.level, config.logging.format)
    passphrase = read_secret_file(passphrase_file, "passphrase")
    try:
        ensure_state_dir(state)
        identity, created = load_or_create_identity(state, passphrase)
    except IdentityFileError as exc:
        fail(str(exc))
    node_id_var.set(identity.node_id)
    trace_id_var.set(new_trace_id())  # the run's trace id; trio.run copies the context
    log = get_logger("cli")
    if created:
        log.info("created node identity", extra={"state_dir": str(state)})
    if token is not None:
        try:
            parse_token(token)
        except TokenError as exc:
            fail(f"--token: {exc}")
    try:
        trio.run(functools.partial(run_daemon, notifier=notifier), config, identity, state, token)
    except (StateLockedError, StartupError, ClusterStateError, MetricsListenError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted")


def _systemd_notifier() -> Any:
    """The sd_notify channel systemd passed (Type=notify), else the no-op one."""
    import os

    from vramancer_node.sdnotify import ENV_NAMES, NO_NOTIFY, NotifyConfigError, SdNotifier

    try:
        notifier = SdNotifier.from_environ(os.environ)
    except NotifyConfigError as exc:
        fail(str(exc))
    for name in ENV_NAMES:  # like sd_notify(unset_environment=1): not for our children
        os.environ.pop(name, None)
    return notifier if notifier is not None else NO_NOTIFY


@identity_app.command("show")
def identity_show(
    state_dir: Path | None = STATE_DIR_OPTION,
    json_out: bool = JSON_OPTION,
    passphrase_file: Path | None = PASSPHRASE_OPTION,
) -> None:
    """Show this node's id and public key."""
    from vramancer_node.cluster import ClusterStateError, ClusterStore

    state = resolve_state_dir(state_dir)
    identity = _load_identity(state, passphrase_file)
    try:
        membership = ClusterStore(state).load()
    except ClusterStateError as exc:
        fail(str(exc))
    certificate = None
    if membership is not None:
        cert = membership.cert
        certificate = {
            "serial": cert.serial,
            "node_name": cert.node_name,
            "roles": list(cert.roles),
            "not_before": cert.not_before,
            "not_after": cert.not_after,
            "encoded": base64.b64encode(membership.certificate).decode("ascii"),
        }
    body = {
        "node_id": identity.node_id,
        "public_key": identity.public_key_b64,
        "cluster_id": membership.cluster_id if membership else None,
        "certificate": certificate,
        "state_dir": str(state),
    }
    if json_out:
        print_json({"schema": "vramancer.identity.v1", **body})
        return
    rows = [(k, v) for k, v in body.items() if k != "certificate"]
    if certificate is not None:
        rows += [(f"certificate.{k}", v) for k, v in certificate.items() if k != "encoded"]
    print_fields(rows)


@identity_app.command("init")
def identity_init(
    state_dir: Path | None = STATE_DIR_OPTION,
    passphrase_file: Path | None = PASSPHRASE_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Create this node's identity (fails if one exists)."""
    state = resolve_state_dir(state_dir)
    try:
        identity = create_identity(state, read_secret_file(passphrase_file, "passphrase"))
    except IdentityFileError as exc:
        fail(str(exc))
    if json_out:
        print_json(
            {
                "schema": "vramancer.identity.v1",
                "node_id": identity.node_id,
                "public_key": identity.public_key_b64,
            }
        )
    else:
        print_fields([("node_id", identity.node_id), ("public_key", identity.public_key_b64)])


@config_app.command("show")
def config_show(
    config_file: Path | None = CONFIG_OPTION,
    preset: str | None = PRESET_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Show the effective configuration (preset, file, then flags)."""
    config = _load_config(config_file, {"preset": preset})
    if json_out:
        print_json({"schema": "vramancer.config.v1", **config_to_dict(config)})
        return
    rows: list[tuple[str, Any]] = []
    for dotted, field, _hint in iter_fields():
        value: Any = config
        for part in dotted.split("."):
            value = getattr(value, part)
        unit = field.metadata.get("unit")
        rows.append((dotted, f"{value} {unit}" if unit and value is not None else value))
    print_fields(rows)


@app.command()
def doctor(
    state_dir: Path | None = STATE_DIR_OPTION,
    config_file: Path | None = CONFIG_OPTION,
    preset: str | None = PRESET_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Check GPUs, ports, mDNS, state directory, keys, clocks and versions; exit 1 on a fail."""
    from vramancer_node.doctor import DoctorInputs, NodeApi, report, run_checks

    config = _load_config(config_file, {"preset": preset})
    state = resolve_state_dir(state_dir)
    results = run_checks(DoctorInputs(config=config, state_dir=state, node=NodeApi(state)))
    document = report(results)
    if json_out:
        print_json(document)
    else:
        print_table(
            ["check", "status", "summary"], [(r.name, r.status, r.summary) for r in results]
        )
        for r in results:
            if r.fix:
                typer.echo(f"{r.name}: fix: {r.fix}")
    if not document["ok"]:
        raise typer.Exit(EXIT_ERROR)


@app.command()
def version(json_out: bool = JSON_OPTION) -> None:
    """Show the software and protocol versions."""
    if json_out:
        print_json(
            {
                "schema": "vramancer.version.v1",
                "version": __version__,
                "protocol_version": PROTOCOL_VERSION,
            }
        )
    else:
        typer.echo(f"vramancer-node {__version__} (protocol {PROTOCOL_VERSION})")


def main(argv: list[str] | None = None) -> NoReturn:
    run_app(app, "vramancer-node", argv)
