"""NVIDIA Jetson boards: one integrated GPU sharing the board's RAM.

Theory of operation
-------------------
Jetsons have no NVML (or one that cannot report memory), so this probe reads the
files L4T provides.  Paths are relative to ``root``:

Detection — either of
    ``etc/nv_tegra_release``   the L4T release file (``# R35 (release), REVISION: 4.1``)
    ``proc/device-tree/model`` containing :data:`JETSON_MODEL_MARKER`
    (``NVIDIA Jetson AGX Orin Developer Kit``).

Memory
    ``proc/meminfo`` ``MemTotal`` / ``MemAvailable``: CPU and GPU share one pool
    (unified memory), so what the kernel can hand out is what a model can use.

Name
    The device-tree model, else ``NVIDIA Jetson``.

Compute estimate (tegra sysfs; the GPU is a devfreq device)
    ``sys/devices/gpu.0/devfreq/*/{max_freq,cur_freq}``            (L4T <= R35)
    ``sys/devices/platform/gpu.0/devfreq/*/{max_freq,cur_freq}``
    ``sys/devices/platform/bus@0/17000000.gpu/devfreq/*/...``     (L4T R36)
    in Hz.  ``max_freq`` is preferred because the estimate is a peak (see
    :mod:`.compute`); ``cur_freq`` follows DVFS and is used only when ``max_freq`` is
    missing.  The sysfs does not state the CUDA core count, so it comes from
    :data:`JETSON_CUDA_CORES` (NVIDIA's module data sheets), keyed by the model name
    and, where two modules share a name, by memory size.  A model not in the table
    gets no estimate.
"""

from __future__ import annotations

from pathlib import Path

from vramancer_node.devices.compute import peak_fp32_tflops
from vramancer_node.devices.errors import ProbeUnavailable
from vramancer_node.devices.model import DeviceInfo
from vramancer_node.devices.procfs import read_device_tree_model, read_meminfo, read_text

TEGRA_RELEASE_PATH = "etc/nv_tegra_release"
JETSON_MODEL_MARKER = "NVIDIA Jetson"
JETSON_DEFAULT_NAME = "NVIDIA Jetson"
GPU_DEVFREQ_GLOBS = (
    "sys/devices/gpu.0/devfreq/*",
    "sys/devices/platform/gpu.0/devfreq/*",
    "sys/devices/platform/bus@0/17000000.gpu/devfreq/*",
)
GPU_FREQ_FILES = ("max_freq", "cur_freq")
"""devfreq files holding a frequency in Hz, in order of preference."""

GIB = 1024**3
JETSON_CUDA_CORES: tuple[tuple[str, int, int], ...] = (
    # (model substring, minimum MemTotal bytes, CUDA cores).  First match wins, so
    # longer names and bigger memory variants come first ("Orin Nano" before "Nano").
    # MemTotal is below the module size (carve-outs), hence thresholds between sizes.
    ("AGX Orin", 48 * GIB, 2048),  # AGX Orin 64GB: 16 SMs
    ("AGX Orin", 0, 1792),  # AGX Orin 32GB: 14 SMs
    ("Orin NX", 0, 1024),  # Orin NX 16GB and 8GB
    ("Orin Nano", 6 * GIB, 1024),  # Orin Nano 8GB
    ("Orin Nano", 0, 512),  # Orin Nano 4GB
    ("AGX Xavier", 0, 512),
    ("Xavier NX", 0, 384),
    ("TX2", 0, 256),
    ("TX1", 0, 256),
    ("Nano", 0, 128),
)


def is_jetson(root: Path = Path("/")) -> bool:
    """True when the L4T release file exists or the device-tree model names a Jetson."""
    if (root / TEGRA_RELEASE_PATH).is_file():
        return True
    model = read_device_tree_model(root)
    return model is not None and JETSON_MODEL_MARKER in model


def jetson_cuda_cores(model: str | None, memory_total_bytes: int | None) -> int | None:
    """CUDA cores of the module named ``model`` per :data:`JETSON_CUDA_CORES`."""
    if model is None:
        return None
    for marker, memory_min_bytes, cores in JETSON_CUDA_CORES:
        if marker not in model:
            continue
        if memory_min_bytes and (
            memory_total_bytes is None or memory_total_bytes < memory_min_bytes
        ):
            continue
        return cores
    return None


def gpu_frequency_hz(root: Path) -> int | None:
    """The GPU's devfreq ``max_freq`` (else ``cur_freq``) in Hz; ``None`` when absent."""
    for name in GPU_FREQ_FILES:
        for pattern in GPU_DEVFREQ_GLOBS:
            for directory in sorted(root.glob(pattern)):
                text = (read_text(directory, name) or "").strip()
                if text.isascii() and text.isdigit():
                    return int(text)
    return None


def probe_jetson(root: Path = Path("/")) -> list[DeviceInfo]:
    """The board's integrated GPU; :class:`ProbeUnavailable` when this is not a Jetson."""
    if not is_jetson(root):
        raise ProbeUnavailable("not a Jetson (no nv_tegra_release, no Jetson device-tree model)")
    model = read_device_tree_model(root)
    name = model or JETSON_DEFAULT_NAME
    memory = read_meminfo(root)
    cores = jetson_cuda_cores(model, memory.total_bytes)
    return [
        DeviceInfo(
            kind="jetson",
            name=name,
            memory_total_bytes=memory.total_bytes,
            memory_free_bytes=memory.available_bytes,
            compute_tflops=peak_fp32_tflops(cores, gpu_frequency_hz(root)),
        )
    ]
