"""MembershipTiming: memberlist's presets, one validation pass, config parity."""

from __future__ import annotations

import dataclasses

import pytest

from protocol.membership.timing import (
    TIMING_RANGES,
    MembershipTiming,
    push_pull_interval_scaled_s,
)
from vramancer_node.config import MembershipSection, build_config

# memberlist config.go, DefaultLANConfig / DefaultWANConfig / DefaultLocalConfig.
MEMBERLIST_PRESETS = {
    "lan": {
        "probe_interval_s": 1.0,
        "probe_timeout_s": 0.5,
        "indirect_checks": 3,
        "suspicion_mult": 4,
        "suspicion_max_timeout_mult": 6,
        "retransmit_mult": 4,
        "gossip_interval_s": 0.2,
        "gossip_nodes": 3,
        "gossip_to_the_dead_s": 30.0,
        "push_pull_interval_s": 30.0,
        "awareness_max_multiplier": 8,
        "tcp_timeout_s": 10.0,
    },
    "wan": {
        "probe_interval_s": 5.0,
        "probe_timeout_s": 3.0,
        "indirect_checks": 3,
        "suspicion_mult": 6,
        "suspicion_max_timeout_mult": 6,
        "retransmit_mult": 4,
        "gossip_interval_s": 0.5,
        "gossip_nodes": 4,
        "gossip_to_the_dead_s": 60.0,
        "push_pull_interval_s": 60.0,
        "awareness_max_multiplier": 8,
        "tcp_timeout_s": 30.0,
    },
    "local": {
        "probe_interval_s": 1.0,
        "probe_timeout_s": 0.2,
        "indirect_checks": 1,
        "suspicion_mult": 3,
        "suspicion_max_timeout_mult": 6,
        "retransmit_mult": 2,
        "gossip_interval_s": 0.1,
        "gossip_nodes": 3,
        "gossip_to_the_dead_s": 15.0,
        "push_pull_interval_s": 15.0,
        "awareness_max_multiplier": 8,
        "tcp_timeout_s": 1.0,
    },
}
PRESET_FACTORIES = {
    "lan": MembershipTiming.lan,
    "wan": MembershipTiming.wan,
    "local": MembershipTiming.local,
}


@pytest.mark.parametrize("preset", sorted(MEMBERLIST_PRESETS))
def test_presets_carry_memberlists_numbers(preset: str) -> None:
    timing = PRESET_FACTORIES[preset]()
    assert dataclasses.asdict(timing) == MEMBERLIST_PRESETS[preset]


def test_default_is_lan() -> None:
    assert MembershipTiming() == MembershipTiming.lan()


def test_field_names_and_defaults_match_the_config_section() -> None:
    ours = {f.name: f.default for f in dataclasses.fields(MembershipTiming)}
    theirs = {f.name: f.default for f in dataclasses.fields(MembershipSection)}
    assert ours == theirs


@pytest.mark.parametrize("preset", sorted(MEMBERLIST_PRESETS))
def test_config_presets_copy_over_unchanged(preset: str) -> None:
    section = build_config({"preset": preset}).membership
    assert MembershipTiming(**dataclasses.asdict(section)) == PRESET_FACTORIES[preset]()


def test_ranges_match_the_config_section() -> None:
    for f in dataclasses.fields(MembershipSection):
        assert TIMING_RANGES[f.name] == (f.metadata["min"], f.metadata["max"]), f.name


@pytest.mark.parametrize("name", sorted(TIMING_RANGES))
@pytest.mark.parametrize("side", ["below", "above"])
def test_out_of_range_values_name_the_field_and_range(name: str, side: str) -> None:
    low, high = TIMING_RANGES[name]
    step = 1 if isinstance(high, int) else high / 2
    value = low - step if side == "below" else high + step
    with pytest.raises(ValueError, match=rf"^{name} must be in \[{low}, {high}\], got"):
        MembershipTiming(**{name: value})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("indirect_checks", 2.0),
        ("gossip_nodes", True),
        ("probe_interval_s", "1"),
        ("probe_interval_s", float("nan")),
    ],
)
def test_wrong_types_are_rejected(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=name):
        MembershipTiming(**{name: value})


def test_probe_timeout_must_be_below_the_interval() -> None:
    with pytest.raises(ValueError, match="probe_timeout_s must be below probe_interval_s"):
        MembershipTiming(probe_interval_s=1.0, probe_timeout_s=1.0)


def test_integral_floats_are_fine_for_float_fields() -> None:
    assert MembershipTiming(probe_interval_s=2, gossip_to_the_dead_s=0).probe_interval_s == 2


def test_timing_is_frozen() -> None:
    timing = MembershipTiming()
    with pytest.raises(dataclasses.FrozenInstanceError):
        timing.probe_interval_s = 2.0  # type: ignore[misc]


# memberlist util_test.go TestPushPullScale: 1 s interval, scaled for n > 32.
@pytest.mark.parametrize(
    ("members", "expected_s"),
    [(0, 1.0), (1, 1.0), (32, 1.0), (33, 2.0), (64, 2.0), (65, 3.0), (128, 3.0), (1000, 6.0)],
)
def test_push_pull_interval_scales_with_log2_of_the_cluster(
    members: int, expected_s: float
) -> None:
    assert push_pull_interval_scaled_s(1.0, members) == expected_s
