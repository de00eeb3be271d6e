"""Device probes: what memory and compute this machine brings to the cluster.

Theory of operation
-------------------
:func:`probe_devices` asks, in order, NVML (discrete NVIDIA GPUs), the Jetson's
``/proc`` and tegra sysfs, torch (CUDA without NVML, Apple MPS), and finally
``/proc`` for a CPU-only machine (Raspberry Pi, x86 server), and returns the first
usable answer as a list of :class:`DeviceInfo`.  :class:`DeviceMonitor` repeats that
every ``refresh_interval_s`` in a worker thread and calls ``on_change`` when the
list moved enough to be worth gossiping; :func:`gossip_records` turns a list into
the ``protocol.membership`` device records of this member's state record.

Modules, one concept each::

    model       DeviceInfo (local view) and its gossip form
    errors      DeviceProbeError tree: translations of NVML/torch/file errors
    compute     the peak-FP32 TFLOP/s estimate and its tables
    procfs      /proc/meminfo, /proc/cpuinfo and device-tree reads under a root
    nvml        NVIDIA GPUs through pynvml
    jetson      Jetson boards (unified memory, tegra devfreq)
    torchprobe  torch.cuda / torch.backends.mps fallback
    cpu         CPU-only machines and boards
    probe       the probe chain (probe_devices)
    monitor     DeviceMonitor, the periodic trio service

Unknown values stay ``None`` and are left out of every published form; nothing is
invented.
"""

from __future__ import annotations

from vramancer_node.devices.cpu import is_raspberry_pi, probe_cpu
from vramancer_node.devices.errors import (
    DeviceLost,
    DeviceProbeError,
    DeviceQueryFailed,
    DeviceUnsupported,
    ProbeFailed,
    ProbeUnavailable,
)
from vramancer_node.devices.jetson import is_jetson, probe_jetson
from vramancer_node.devices.model import DeviceInfo, DeviceKind, gossip_records
from vramancer_node.devices.monitor import (
    MEMORY_FREE_CHANGE_FRACTION_DEFAULT,
    REFRESH_INTERVAL_S_DEFAULT,
    DeviceMonitor,
    significant_change,
)
from vramancer_node.devices.nvml import probe_nvml
from vramancer_node.devices.probe import probe_devices
from vramancer_node.devices.torchprobe import probe_torch

__all__ = [
    "MEMORY_FREE_CHANGE_FRACTION_DEFAULT",
    "REFRESH_INTERVAL_S_DEFAULT",
    "DeviceInfo",
    "DeviceKind",
    "DeviceLost",
    "DeviceMonitor",
    "DeviceProbeError",
    "DeviceQueryFailed",
    "DeviceUnsupported",
    "ProbeFailed",
    "ProbeUnavailable",
    "gossip_records",
    "is_jetson",
    "is_raspberry_pi",
    "probe_cpu",
    "probe_devices",
    "probe_jetson",
    "probe_nvml",
    "probe_torch",
    "significant_change",
]
