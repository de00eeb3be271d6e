"""DeviceInfo, its JSON and gossip forms, the compute estimate and the /proc parsers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.membership.record import DEVICE_NAME_CHARS_MAX, DEVICES_MAX
from protocol.membership.record import DeviceInfo as DeviceRecord
from vramancer_node.devices import DeviceInfo, gossip_records
from vramancer_node.devices.compute import cuda_cores_from_sms, peak_fp32_tflops
from vramancer_node.devices.procfs import parse_cpuinfo, parse_meminfo

GIB = 1024**3


def test_to_dict_leaves_unknown_values_out() -> None:
    device = DeviceInfo(
        kind="cuda", index=1, name="NVIDIA H200", memory_total_bytes=141 * GIB,
        compute_capability=(9, 0),
    )  # fmt: skip
    assert device.to_dict() == {
        "kind": "cuda",
        "index": 1,
        "name": "NVIDIA H200",
        "memory_total_bytes": 141 * GIB,
        "compute_capability": "9.0",
    }
    lost = DeviceInfo(kind="cuda", index=2, error="gpu_lost")
    assert lost.to_dict() == {"kind": "cuda", "index": 2, "error": "gpu_lost"}


def test_gossip_record_of_a_usable_device() -> None:
    device = DeviceInfo(
        kind="jetson",
        name="x" * (DEVICE_NAME_CHARS_MAX + 10),
        memory_total_bytes=8 * GIB,
        memory_free_bytes=8 * GIB + 1,  # read a moment apart from the total
        compute_tflops=1.253,
        cores=None,
    )
    assert device.to_record() == DeviceRecord(
        kind="jetson",
        name="x" * DEVICE_NAME_CHARS_MAX,
        memory_total_bytes=8 * GIB,
        memory_free_bytes=8 * GIB,
        compute_tflops=1.253,
    )


def test_gossip_records_skip_unusable_devices_and_respect_the_record_limit() -> None:
    lost = DeviceInfo(kind="cuda", index=0, error="gpu_lost")
    gpus = [
        DeviceInfo(kind="cuda", index=i, name="GPU", memory_total_bytes=GIB)
        for i in range(1, DEVICES_MAX + 3)
    ]
    records = gossip_records([lost, *gpus])
    assert len(records) == DEVICES_MAX
    assert all(record.kind == "cuda" for record in records)
    with pytest.raises(ValueError, match="not usable"):
        lost.to_record()


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "tpu"},
        {"kind": "cpu", "memory_total_bytes": -1},
        {"kind": "cpu", "cores": -2},
        {"kind": "cpu", "compute_tflops": float("nan")},
        {"kind": "cpu", "compute_tflops": float("inf")},
    ],
)
def test_invalid_values_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DeviceInfo(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cores", "clock_hz", "tflops"),
    [
        (16896, 1.98e9, 66.908),  # H100 SXM: 132 SMs * 128, 1980 MHz
        (128, 921.6e6, 0.236),  # Jetson Nano
        (None, 1e9, None),
        (1024, None, None),
        (0, 1e9, None),
    ],
)
def test_peak_fp32_formula(cores: int | None, clock_hz: float | None, tflops: float | None) -> None:
    assert peak_fp32_tflops(cores, clock_hz) == tflops


def test_cores_from_sm_count_only_for_known_capabilities() -> None:
    assert cuda_cores_from_sms(132, (9, 0)) == 16896
    assert cuda_cores_from_sms(108, (8, 0)) == 6912
    assert cuda_cores_from_sms(108, (42, 0)) is None
    assert cuda_cores_from_sms(None, (9, 0)) is None


def test_meminfo_parser_scales_kb_and_keeps_unitless_counts() -> None:
    text = "MemTotal:  100 kB\nHugePages_Total:   3\ngarbage line\nBad: x kB\nOdd: 5 MB\n"
    assert parse_meminfo(text) == {"MemTotal": 102400, "HugePages_Total": 3}


def test_cpuinfo_parser_is_case_sensitive_and_counts_processors() -> None:
    info = parse_cpuinfo("processor\t: 0\nmodel\t\t: 1\nprocessor\t: 1\nModel\t: Board\n")
    assert info.logical_cpus == 2
    assert info.fields["model"] == "1"
    assert info.fields["Model"] == "Board"


@given(st.text())
def test_parsers_never_raise_on_arbitrary_text(text: str) -> None:
    assert all(value >= 0 for value in parse_meminfo(text).values())
    assert parse_cpuinfo(text).logical_cpus >= 0
