"""The NVML probe against a stand-in pynvml: values per GPU and every error translation."""

from __future__ import annotations

import logging
from dataclasses import replace

import pynvml
import pytest

from tests.devices.fakenvml import A100_40GB, GIB, RTX_4090, FakeNvml
from vramancer_node.devices import (
    DeviceInfo,
    DeviceLost,
    DeviceQueryFailed,
    DeviceUnsupported,
    ProbeFailed,
    ProbeUnavailable,
    probe_nvml,
)


def test_two_gpus_each_reported_with_their_own_memory_and_estimate() -> None:
    nvml = FakeNvml([RTX_4090, A100_40GB])
    devices = probe_nvml(nvml)
    assert devices == [
        DeviceInfo(
            kind="cuda",
            index=0,
            name="NVIDIA GeForce RTX 4090",
            memory_total_bytes=24 * GIB,
            memory_free_bytes=RTX_4090.memory_free_bytes,
            # 16384 cores * 2 FLOP * 2520 MHz = 82.575 TFLOP/s (the datasheet's figure)
            compute_tflops=82.575,
            compute_capability=(8, 9),
        ),
        DeviceInfo(
            kind="cuda",
            index=1,
            name="NVIDIA A100-SXM4-40GB",
            memory_total_bytes=40 * GIB,
            memory_free_bytes=39 * GIB,
            # no NumGpuCores: 108 SMs * 64 cores (cc 8.0) * 2 * 1410 MHz = 19.492
            compute_tflops=19.492,
            compute_capability=(8, 0),
        ),
    ]
    assert nvml.called("nvmlInit") == nvml.called("nvmlShutdown") == 1
    assert nvml.sessions_open == 0
    # The driver's own core count is used where it has one; the SM count only for GPU 1.
    assert [call for call in nvml.calls if call[0] == "nvmlDeviceGetAttributes"] == [
        ("nvmlDeviceGetAttributes", 1)
    ]


@pytest.mark.parametrize(
    "error",
    [pynvml.NVMLError_LibraryNotFound(), pynvml.NVMLError_DriverNotLoaded()],
    ids=["library_not_found", "driver_not_loaded"],
)
def test_missing_library_or_driver_is_unavailable_and_nothing_to_shut_down(
    error: pynvml.NVMLError,
) -> None:
    nvml = FakeNvml([RTX_4090], failures={("nvmlInit", None): error})
    with pytest.raises(ProbeUnavailable) as info:
        probe_nvml(nvml)
    assert info.value.__cause__ is error
    assert nvml.calls == [("nvmlInit", None)]


@pytest.mark.parametrize(
    "error",
    [pynvml.NVMLError_NoPermission(), pynvml.NVMLError_LibRmVersionMismatch()],
    ids=["no_permission", "lib_rm_version_mismatch"],
)
def test_other_init_errors_are_probe_failures(error: pynvml.NVMLError) -> None:
    nvml = FakeNvml([RTX_4090], failures={("nvmlInit", None): error})
    with pytest.raises(ProbeFailed) as info:
        probe_nvml(nvml)
    assert info.value.__cause__ is error
    assert nvml.called("nvmlShutdown") == 0


def test_device_count_error_is_a_probe_failure_and_still_shuts_down() -> None:
    nvml = FakeNvml([RTX_4090], failures={("nvmlDeviceGetCount", None): pynvml.NVMLError_Unknown()})
    with pytest.raises(ProbeFailed, match="nvmlDeviceGetCount"):
        probe_nvml(nvml)
    assert nvml.called("nvmlShutdown") == 1
    assert nvml.sessions_open == 0


def test_no_gpu_is_unavailable_and_still_shuts_down() -> None:
    nvml = FakeNvml([])
    with pytest.raises(ProbeUnavailable, match="no GPU"):
        probe_nvml(nvml)
    assert nvml.sessions_open == 0


@pytest.mark.parametrize(
    "call",
    [
        "nvmlDeviceGetHandleByIndex",
        "nvmlDeviceGetName",
        "nvmlDeviceGetMemoryInfo",
        "nvmlDeviceGetCudaComputeCapability",
        "nvmlDeviceGetMaxClockInfo",
    ],
)
def test_lost_gpu_is_reported_with_error_and_logged_others_intact(
    call: str, caplog: pytest.LogCaptureFixture
) -> None:
    healthy = probe_nvml(FakeNvml([RTX_4090, A100_40GB]))
    nvml = FakeNvml([RTX_4090, A100_40GB], failures={(call, 1): pynvml.NVMLError_GpuIsLost()})
    with caplog.at_level(logging.WARNING, logger="vramancer.devices"):
        devices = probe_nvml(nvml)
    assert devices == [healthy[0], DeviceInfo(kind="cuda", index=1, error="gpu_lost")]
    assert not devices[1].usable
    assert "GPU 1" in caplog.text and "gpu_lost" in caplog.text and "GPU is lost" in caplog.text
    assert nvml.called("nvmlShutdown") == 1


def test_reset_required_counts_as_lost() -> None:
    nvml = FakeNvml(
        [RTX_4090], failures={("nvmlDeviceGetMemoryInfo", 0): pynvml.NVMLError_ResetRequired()}
    )
    assert probe_nvml(nvml) == [DeviceInfo(kind="cuda", index=0, error=DeviceLost.code)]


def test_other_device_error_is_query_failed() -> None:
    nvml = FakeNvml(
        [RTX_4090, A100_40GB], failures={("nvmlDeviceGetName", 0): pynvml.NVMLError_Unknown()}
    )
    devices = probe_nvml(nvml)
    assert devices[0] == DeviceInfo(kind="cuda", index=0, error=DeviceQueryFailed.code)
    assert devices[1].usable


def test_unsupported_memory_on_one_gpu_reports_it_beside_the_others() -> None:
    nvml = FakeNvml(
        [RTX_4090, A100_40GB],
        failures={("nvmlDeviceGetMemoryInfo", 1): pynvml.NVMLError_NotSupported()},
    )
    devices = probe_nvml(nvml)
    assert devices[0].usable
    assert devices[1] == DeviceInfo(kind="cuda", index=1, error=DeviceUnsupported.code)


def test_no_gpu_answering_memory_queries_is_unavailable() -> None:
    nvml = FakeNvml(
        [RTX_4090], failures={("nvmlDeviceGetMemoryInfo", 0): pynvml.NVMLError_NotSupported()}
    )
    with pytest.raises(ProbeUnavailable, match="cannot query"):
        probe_nvml(nvml)
    assert nvml.called("nvmlShutdown") == 1


def test_unsupported_optional_values_stay_absent() -> None:
    nvml = FakeNvml(
        [RTX_4090],
        failures={
            ("nvmlDeviceGetMaxClockInfo", 0): pynvml.NVMLError_NotSupported(),
            ("nvmlDeviceGetCudaComputeCapability", 0): pynvml.NVMLError_NoPermission(),
        },
    )
    [device] = probe_nvml(nvml)
    assert device.usable
    assert device.compute_tflops is None
    assert device.compute_capability is None
    assert device.memory_total_bytes == 24 * GIB


def test_old_pynvml_without_core_count_uses_sm_count_times_cores_per_sm() -> None:
    nvml = FakeNvml([RTX_4090], missing=frozenset({"nvmlDeviceGetNumGpuCores"}))
    [device] = probe_nvml(nvml)
    # 128 SMs * 128 cores (cc 8.9) = 16384, the same as the driver's own count.
    assert device.compute_tflops == 82.575
    assert nvml.called("nvmlDeviceGetAttributes") == 1


def test_unknown_compute_capability_gives_no_estimate_rather_than_a_guess() -> None:
    future = replace(A100_40GB, capability=(99, 0))
    [device] = probe_nvml(FakeNvml([future]))
    assert device.compute_capability == (99, 0)
    assert device.compute_tflops is None


def test_name_as_bytes_from_older_pynvml_is_decoded() -> None:
    [device] = probe_nvml(FakeNvml([replace(RTX_4090, name=b"Tesla T4")]))
    assert device.name == "Tesla T4"


def test_failed_shutdown_is_logged_and_the_values_kept(caplog: pytest.LogCaptureFixture) -> None:
    nvml = FakeNvml([RTX_4090], failures={("nvmlShutdown", None): pynvml.NVMLError_Unknown()})
    with caplog.at_level(logging.WARNING, logger="vramancer.devices"):
        devices = probe_nvml(nvml)
    assert devices[0].usable
    assert "nvmlShutdown failed" in caplog.text
