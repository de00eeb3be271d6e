"""The probe chain (NVML -> Jetson -> torch -> CPU), on fixtures and on this machine."""

from __future__ import annotations

import ctypes.util
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pynvml
import pytest

from tests.devices.fakenvml import (
    A100_40GB,
    GIB,
    RTX_4090,
    FakeCudaProps,
    FakeNvml,
    FakeTorch,
    nvml_without_library,
)
from tests.devices.fixturetree import JETSON_ORIN, RASPBERRY_PI_5, X86_SERVER
from vramancer_node.devices import probe_devices

NO_TORCH_ACCELERATOR = FakeTorch()


@pytest.mark.parametrize(
    ("root", "kind", "name"),
    [
        (JETSON_ORIN, "jetson", "NVIDIA Jetson AGX Orin Developer Kit"),
        (RASPBERRY_PI_5, "cpu", "Raspberry Pi 5 Model B Rev 1.0"),
        (X86_SERVER, "cpu", "AMD EPYC 7763 64-Core Processor"),
    ],
    ids=["jetson", "pi5", "x86"],
)
def test_without_nvml_each_board_gets_its_probe(root: Path, kind: str, name: str) -> None:
    [device] = probe_devices(root, nvml=nvml_without_library(), torch_module=FakeTorch())
    assert (device.kind, device.name) == (kind, name)
    assert device.usable


def test_nvml_gpus_win_and_later_probes_never_run() -> None:
    torch = FakeTorch()
    devices = probe_devices(JETSON_ORIN, nvml=FakeNvml([RTX_4090, A100_40GB]), torch_module=torch)
    assert [(d.kind, d.index, d.memory_total_bytes) for d in devices] == [
        ("cuda", 0, 24 * GIB),
        ("cuda", 1, 40 * GIB),
    ]
    assert torch.calls == []


def test_one_lost_gpu_is_kept_in_the_list_beside_the_healthy_one() -> None:
    nvml = FakeNvml(
        [RTX_4090, A100_40GB], failures={("nvmlDeviceGetName", 0): pynvml.NVMLError_GpuIsLost()}
    )
    devices = probe_devices(X86_SERVER, nvml=nvml, torch_module=FakeTorch())
    assert [(d.kind, d.error) for d in devices] == [("cuda", "gpu_lost"), ("cuda", None)]


def test_all_gpus_lost_falls_through_to_the_next_probe(caplog: pytest.LogCaptureFixture) -> None:
    lost = pynvml.NVMLError_GpuIsLost()
    nvml = FakeNvml([RTX_4090], failures={("nvmlDeviceGetMemoryInfo", 0): lost})
    with caplog.at_level(logging.WARNING, logger="vramancer.devices"):
        [device] = probe_devices(X86_SERVER, nvml=nvml, torch_module=FakeTorch())
    assert device.kind == "cpu"
    assert "nvml probe found no usable device" in caplog.text


def test_jetson_nvml_without_memory_info_falls_through_quietly_to_the_jetson_probe(
    caplog: pytest.LogCaptureFixture,
) -> None:
    orin_gpu = FakeNvml(
        [replace(RTX_4090, name="Orin (nvgpu)")],
        failures={("nvmlDeviceGetMemoryInfo", 0): pynvml.NVMLError_NotSupported()},
    )
    with caplog.at_level(logging.WARNING, logger="vramancer.devices"):
        [device] = probe_devices(JETSON_ORIN, nvml=orin_gpu, torch_module=FakeTorch())
    assert device.kind == "jetson"
    assert orin_gpu.called("nvmlShutdown") == 1
    assert caplog.records == []  # every refresh would repeat a warning


def test_nvml_failure_is_logged_and_the_chain_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    nvml = FakeNvml([RTX_4090], failures={("nvmlInit", None): pynvml.NVMLError_NoPermission()})
    with caplog.at_level(logging.WARNING, logger="vramancer.devices"):
        [device] = probe_devices(RASPBERRY_PI_5, nvml=nvml, torch_module=FakeTorch())
    assert device.kind == "cpu"
    assert "nvml probe failed" in caplog.text


def test_torch_cuda_is_used_where_nvml_is_missing() -> None:
    props = FakeCudaProps("NVIDIA L4", 8, 9, 24 * GIB, 58)
    torch = FakeTorch([(props, 20 * GIB)])
    [device] = probe_devices(X86_SERVER, nvml=nvml_without_library(), torch_module=torch)
    assert (device.kind, device.name, device.memory_free_bytes) == ("cuda", "NVIDIA L4", 20 * GIB)


def test_mps_without_known_memory_is_not_usable_so_cpu_is_published() -> None:
    torch = FakeTorch(mps=True)
    [device] = probe_devices(X86_SERVER, nvml=nvml_without_library(), torch_module=torch)
    assert device.kind == "cpu"


# --- this machine ---------------------------------------------------------------------


def _nvidia_machine() -> bool:
    return ctypes.util.find_library("nvidia-ml") is not None or Path("/dev/nvidiactl").exists()


def _meminfo_total_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


class RecordingModule:
    """Passes every attribute through to a real module, noting which functions ran."""

    def __init__(self, module: Any) -> None:
        self._module = module
        self.called: list[str] = []

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._module, name)
        if not callable(value) or isinstance(value, type):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            self.called.append(name)
            return value(*args, **kwargs)

        return call


@pytest.mark.skipif(_nvidia_machine(), reason="this machine has an NVIDIA driver")
def test_this_machine_is_one_cpu_device_with_its_real_ram() -> None:
    [device] = probe_devices()
    assert device.kind == "cpu"
    assert device.memory_total_bytes == _meminfo_total_bytes()
    assert device.memory_free_bytes is not None
    assert 0 < device.memory_free_bytes <= device.memory_total_bytes
    processors = Path("/proc/cpuinfo").read_text().count("processor\t:")
    assert device.cores == processors > 0
    assert device.name


@pytest.mark.skipif(_nvidia_machine(), reason="this machine has an NVIDIA driver")
def test_real_pynvml_is_called_and_falls_through_cleanly() -> None:
    real = RecordingModule(pynvml)
    [device] = probe_devices(nvml=real)
    assert real.called == ["nvmlInit"]  # fails (no libnvidia-ml), so nothing to shut down
    assert device.kind == "cpu"
