"""The torch fallback probe against a fake torch, and the real CPU-only torch."""

from __future__ import annotations

import logging

import pytest

from tests.devices.fakenvml import GIB, FakeCudaProps, FakeTorch
from vramancer_node.devices import DeviceInfo, ProbeUnavailable, probe_torch

L4 = FakeCudaProps("NVIDIA L4", 8, 9, 24 * GIB, 58)
T4 = FakeCudaProps("Tesla T4", 7, 5, 16 * GIB, 40)


def test_cuda_devices_by_ordinal_with_torch_memory_view() -> None:
    devices = probe_torch(FakeTorch([(L4, 22 * GIB), (T4, 15 * GIB)]))
    assert devices == [
        DeviceInfo(
            kind="cuda",
            index=0,
            name="NVIDIA L4",
            memory_total_bytes=24 * GIB,
            memory_free_bytes=22 * GIB,
            compute_capability=(8, 9),
        ),
        DeviceInfo(
            kind="cuda",
            index=1,
            name="Tesla T4",
            memory_total_bytes=16 * GIB,
            memory_free_bytes=15 * GIB,
            compute_capability=(7, 5),
        ),
    ]
    assert all(d.compute_tflops is None for d in devices)  # no clock without NVML


def test_cuda_error_on_one_device_reports_it_with_error(caplog: pytest.LogCaptureFixture) -> None:
    torch = FakeTorch(
        [(L4, 22 * GIB), (T4, 15 * GIB)],
        cuda_errors={1: RuntimeError("CUDA error: unspecified launch failure")},
    )
    with caplog.at_level(logging.WARNING, logger="vramancer.devices"):
        devices = probe_torch(torch)
    assert devices[0].usable
    assert devices[1] == DeviceInfo(kind="cuda", index=1, error="query_failed")
    assert "unspecified launch failure" in caplog.text


def test_mps_device_name_and_working_set_limit_free_unknown() -> None:
    torch = FakeTorch(mps=True, mps_name="Apple M2 Max", mps_recommended_bytes=48 * GIB)
    assert probe_torch(torch) == [
        DeviceInfo(kind="mps", name="Apple M2 Max", memory_total_bytes=48 * GIB)
    ]


def test_mps_on_an_old_torch_keeps_unknowns_absent() -> None:
    [device] = probe_torch(FakeTorch(mps=True))
    assert device.kind == "mps"
    assert device.memory_total_bytes is None
    assert not device.usable


def test_neither_backend_is_unavailable() -> None:
    with pytest.raises(ProbeUnavailable):
        probe_torch(FakeTorch())


def test_real_cpu_only_torch_is_imported_lazily_and_unavailable() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("this machine has a torch accelerator")
    with pytest.raises(ProbeUnavailable):
        probe_torch()
