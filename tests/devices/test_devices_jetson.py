"""The Jetson probe against a recorded AGX Orin tree and edited copies of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.devices.fixturetree import (
    JETSON_ORIN,
    KIB,
    RASPBERRY_PI_5,
    X86_SERVER,
    copy_tree,
    meminfo_kib,
)
from vramancer_node.devices import DeviceInfo, ProbeUnavailable, is_jetson, probe_jetson
from vramancer_node.devices.jetson import gpu_frequency_hz, jetson_cuda_cores

GIB = 1024**3
DEVFREQ = Path("sys/devices/gpu.0/devfreq/17000000.ga10b")


def test_agx_orin_unified_memory_name_and_estimate() -> None:
    assert probe_jetson(JETSON_ORIN) == [
        DeviceInfo(
            kind="jetson",
            name="NVIDIA Jetson AGX Orin Developer Kit",
            memory_total_bytes=meminfo_kib(JETSON_ORIN, "MemTotal") * KIB,
            memory_free_bytes=meminfo_kib(JETSON_ORIN, "MemAvailable") * KIB,
            # 2048 cores (64GB module) * 2 FLOP * 1.3005 GHz max_freq = 5.327 TFLOP/s
            compute_tflops=5.327,
        )
    ]


def test_detected_by_release_file_alone(tmp_path: Path) -> None:
    root = copy_tree(JETSON_ORIN, tmp_path)
    (root / "proc/device-tree/model").unlink()
    [device] = probe_jetson(root)
    assert device.name == "NVIDIA Jetson"
    assert device.compute_tflops is None  # the module (hence its core count) is unknown
    assert device.memory_total_bytes == meminfo_kib(root, "MemTotal") * KIB


def test_detected_by_device_tree_model_alone(tmp_path: Path) -> None:
    root = copy_tree(JETSON_ORIN, tmp_path)
    (root / "etc/nv_tegra_release").unlink()
    assert is_jetson(root)
    assert probe_jetson(root)[0].name == "NVIDIA Jetson AGX Orin Developer Kit"


@pytest.mark.parametrize("root", [X86_SERVER, RASPBERRY_PI_5], ids=["x86", "pi5"])
def test_other_machines_are_not_jetsons(root: Path) -> None:
    assert not is_jetson(root)
    with pytest.raises(ProbeUnavailable):
        probe_jetson(root)


def test_cur_freq_used_only_when_max_freq_is_missing(tmp_path: Path) -> None:
    root = copy_tree(JETSON_ORIN, tmp_path)
    assert gpu_frequency_hz(root) == 1_300_500_000
    (root / DEVFREQ / "max_freq").unlink()
    assert gpu_frequency_hz(root) == 306_000_000
    assert probe_jetson(root)[0].compute_tflops == 1.253  # 2048 * 2 * 306 MHz


def test_no_devfreq_means_no_estimate_but_memory_still_known(tmp_path: Path) -> None:
    root = copy_tree(JETSON_ORIN, tmp_path)
    for name in ("max_freq", "cur_freq"):
        (root / DEVFREQ / name).unlink()
    [device] = probe_jetson(root)
    assert device.compute_tflops is None
    assert device.usable


def test_l4t_r36_devfreq_layout(tmp_path: Path) -> None:
    root = copy_tree(JETSON_ORIN, tmp_path)
    (root / DEVFREQ / "max_freq").unlink()
    (root / DEVFREQ / "cur_freq").unlink()
    r36 = root / "sys/devices/platform/bus@0/17000000.gpu/devfreq/17000000.gpu"
    r36.mkdir(parents=True)
    (r36 / "max_freq").write_text("1300500000\n")
    assert gpu_frequency_hz(root) == 1_300_500_000


def test_missing_meminfo_leaves_memory_absent(tmp_path: Path) -> None:
    root = copy_tree(JETSON_ORIN, tmp_path)
    (root / "proc/meminfo").unlink()
    [device] = probe_jetson(root)
    assert device.memory_total_bytes is None and device.memory_free_bytes is None
    assert not device.usable


@pytest.mark.parametrize(
    ("model", "memory_total_bytes", "cores"),
    [
        ("NVIDIA Jetson AGX Orin Developer Kit", 61 * GIB, 2048),
        ("NVIDIA Jetson AGX Orin", 30 * GIB, 1792),
        ("NVIDIA Jetson Orin NX Engineering Reference Developer Kit", 15 * GIB, 1024),
        ("NVIDIA Jetson Orin Nano Developer Kit", 7 * GIB, 1024),
        ("NVIDIA Jetson Orin Nano Engineering Reference Developer Kit", 3 * GIB, 512),
        ("NVIDIA Jetson Xavier NX Developer Kit", 7 * GIB, 384),
        ("Jetson-AGX", 31 * GIB, None),
        ("NVIDIA Jetson AGX Xavier", 31 * GIB, 512),
        ("NVIDIA Jetson Nano Developer Kit", 4 * GIB, 128),
        ("NVIDIA Jetson AGX Orin", None, 1792),
        ("NVIDIA Jetson AGX Thor Developer Kit", 122 * GIB, None),
        (None, 8 * GIB, None),
    ],
)
def test_cuda_core_table(
    model: str | None, memory_total_bytes: int | None, cores: int | None
) -> None:
    assert jetson_cuda_cores(model, memory_total_bytes) == cores
