"""vramancer_node.config: presets, TOML, flags, validation, docs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vramancer_node.config import (
    DEFAULT_PORT,
    ConfigError,
    NodeConfig,
    build_config,
    config_to_dict,
    iter_fields,
    load_config,
    parse_hostport,
)
from vramancer_node.configdoc import render_reference

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_default_is_lan_with_memberlist_numbers() -> None:
    config = build_config()
    assert config == NodeConfig()
    assert config.preset == "lan"
    assert config.membership.probe_interval_s == 1.0
    assert config.membership.probe_timeout_s == 0.5
    assert config.membership.suspicion_mult == 4
    assert config.network.listen == f"0.0.0.0:{DEFAULT_PORT}"


def test_presets_differ_where_memberlist_differs() -> None:
    wan, local = build_config({"preset": "wan"}), build_config({"preset": "local"})
    assert wan.membership.probe_interval_s == 5.0
    assert wan.membership.probe_timeout_s == 3.0
    assert wan.membership.suspicion_mult == 6
    assert local.membership.indirect_checks == 1
    assert local.network.listen.startswith("127.0.0.1:")
    assert local.discovery.mdns is False


def test_toml_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        'preset = "wan"\n[node]\nname = "jetson-1"\n'
        '[network]\nlisten = "10.0.0.5:9000"\npeers = ["10.0.0.6:9000"]\n'
        "[membership]\nprobe_interval_s = 7\n"
    )
    config = load_config(path, {"network.listen": "127.0.0.1:9100"})
    assert config.preset == "wan"
    assert config.node.name == "jetson-1"
    assert config.network.listen == "127.0.0.1:9100"  # flag wins over file
    assert config.network.peers == ("10.0.0.6:9000",)
    assert config.membership.probe_interval_s == 7.0  # int accepted for a float field
    assert config.membership.gossip_nodes == 4  # from the wan preset


@pytest.mark.parametrize(
    ("overrides", "field", "text"),
    [
        ({"membership.probe_interval_s": 0}, "membership.probe_interval_s", r"\[0.01, 60\] s"),
        ({"membership.gossip_nodes": 1000}, "membership.gossip_nodes", r"\[1, 64\]"),
        ({"logging.level": "loud"}, "logging.level", "debug, info, warning, error"),
        ({"preset": "moon"}, "preset", "lan, wan, local"),
        ({"network.listen": "nohost"}, "network.listen", "HOST:PORT"),
        ({"network.listen": "1.2.3.4:70000"}, "network.listen", "65535"),
        ({"network.peers": ["a:1", "b"]}, "network.peers", "HOST:PORT"),
        ({"network.peers": "a:1"}, "network.peers", "list of strings"),
        ({"membership.gossip_nodes": "3"}, "membership.gossip_nodes", "must be int"),
        ({"membership.gossip_nodes": True}, "membership.gossip_nodes", "must be int"),
        ({"discovery.mdns": "yes"}, "discovery.mdns", "must be bool"),
        ({"membership.probe_timeout_s": 2.0}, "membership.probe_timeout_s", "below"),
        ({"membership.nonsense": 1}, "membership.nonsense", "unknown setting"),
    ],
)
def test_validation_names_the_field_and_range(
    overrides: dict[str, object], field: str, text: str
) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(overrides)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert re.search(text, str(info.value))


def test_unknown_toml_section_and_bad_toml(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text("[gpu]\nmagic = 1\n")
    with pytest.raises(ConfigError, match="gpu: unknown"):
        load_config(path, {})
    path.write_text("[node\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, {})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml", {})


def test_hostport_forms() -> None:
    assert parse_hostport("127.0.0.1:7733") == ("127.0.0.1", 7733)
    assert parse_hostport("[::1]:7733") == ("::1", 7733)
    assert parse_hostport("node-a.local:1") == ("node-a.local", 1)
    for bad in ("::1:7733", ":7733", "host:", "host:port", "[zz]:1"):
        with pytest.raises(ValueError):
            parse_hostport(bad)


def test_config_is_frozen_and_json_able() -> None:
    config = build_config({"network.peers": ["a:1"]})
    with pytest.raises(AttributeError):
        config.preset = "wan"  # type: ignore[misc]
    assert config_to_dict(config)["network"]["peers"] == ["a:1"]


def test_docs_reference_is_generated_from_the_code() -> None:
    docs = (REPO_ROOT / "docs" / "configuration.md").read_text()
    assert render_reference() in docs, "run: python -m vramancer_node.configdoc --write"


def test_every_field_is_documented_with_unit_in_the_docs() -> None:
    docs = (REPO_ROOT / "docs" / "configuration.md").read_text()
    for name, field, _hint in iter_fields():
        assert field.metadata["doc"], f"{name} has no doc string"
        assert f"`{name}`" in docs, f"docs/configuration.md does not document {name}"
        if name.endswith("_s"):
            assert field.metadata["unit"] == "s", f"{name} ends in _s but has no unit"
