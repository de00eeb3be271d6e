"""The CPU probe against recorded Raspberry Pi 5, x86 server and Jetson trees."""

from __future__ import annotations

import platform
from pathlib import Path

from tests.devices.fixturetree import (
    JETSON_ORIN,
    KIB,
    RASPBERRY_PI_5,
    X86_SERVER,
    copy_tree,
    meminfo_kib,
)
from vramancer_node.devices import DeviceInfo, is_raspberry_pi, probe_cpu


def test_raspberry_pi_5_board_name_ram_and_cores() -> None:
    assert is_raspberry_pi(RASPBERRY_PI_5)
    assert probe_cpu(RASPBERRY_PI_5) == [
        DeviceInfo(
            kind="cpu",
            name="Raspberry Pi 5 Model B Rev 1.0",
            memory_total_bytes=meminfo_kib(RASPBERRY_PI_5, "MemTotal") * KIB,
            memory_free_bytes=meminfo_kib(RASPBERRY_PI_5, "MemAvailable") * KIB,
            cores=4,
        )
    ]


def test_raspberry_pi_without_device_tree_names_itself_from_cpuinfo_model(tmp_path: Path) -> None:
    root = copy_tree(RASPBERRY_PI_5, tmp_path)
    (root / "proc/device-tree/model").unlink()
    cpuinfo = root / "proc/cpuinfo"
    cpuinfo.write_text(cpuinfo.read_text().replace("Pi 5 Model B Rev 1.0", "Pi 4 Model B Rev 1.4"))
    assert not is_raspberry_pi(root)
    assert probe_cpu(root)[0].name == "Raspberry Pi 4 Model B Rev 1.4"


def test_x86_server_takes_model_name_not_the_numeric_model_field() -> None:
    assert not is_raspberry_pi(X86_SERVER)
    [device] = probe_cpu(X86_SERVER)
    assert device.name == "AMD EPYC 7763 64-Core Processor"
    assert device.cores == 8
    assert device.memory_total_bytes == 32856100 * KIB
    assert device.memory_free_bytes == 30911484 * KIB
    assert device.compute_tflops is None


def test_device_tree_board_name_beats_the_core_name() -> None:
    [device] = probe_cpu(JETSON_ORIN)
    assert device.name == "NVIDIA Jetson AGX Orin Developer Kit"
    assert device.cores == 12


def test_missing_files_leave_values_absent_never_invented(tmp_path: Path) -> None:
    root = copy_tree(X86_SERVER, tmp_path)
    (root / "proc/cpuinfo").unlink()
    meminfo = root / "proc/meminfo"
    meminfo.write_text(
        "".join(
            line + "\n" for line in meminfo.read_text().splitlines() if "MemAvailable" not in line
        )
    )
    [device] = probe_cpu(root)
    assert device.cores is None
    assert device.memory_free_bytes is None
    assert device.memory_total_bytes == 32856100 * KIB
    assert device.name == (platform.machine() or "cpu")
