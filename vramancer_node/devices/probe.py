"""The probe chain: which devices this machine publishes.

Theory of operation
-------------------
Probes are tried in order; the first that reports at least one *usable* device
(queried without error, total memory known) wins, and its whole list — including
GPUs it found but could not query, each with ``error`` set — is the answer:

1. NVML (:mod:`.nvml`): discrete NVIDIA GPUs, per GPU.
2. Jetson (:mod:`.jetson`): the integrated GPU and unified memory of a Tegra board.
   Tried after NVML because a Jetson's NVML, where present, cannot report memory —
   its GPU comes back unusable and the chain moves on.
3. torch (:mod:`.torchprobe`): CUDA where NVML is missing, or Apple MPS.
4. CPU (:mod:`.cpu`): always answers, so the result is never empty.

A probe that does not apply raises :class:`~.errors.ProbeUnavailable` (logged at
debug level); one that applies but fails raises :class:`~.errors.ProbeFailed`
(warning).  Either way the next probe runs.  A GPU host therefore publishes its GPUs
and not its CPU: placement pools accelerator memory.

Everything here blocks (file reads, NVML, CUDA); call it from a worker thread, as
:class:`~.monitor.DeviceMonitor` does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from vramancer_node.devices.cpu import probe_cpu
from vramancer_node.devices.errors import DeviceProbeError, ProbeUnavailable
from vramancer_node.devices.jetson import probe_jetson
from vramancer_node.devices.model import DeviceInfo
from vramancer_node.devices.nvml import probe_nvml
from vramancer_node.devices.torchprobe import probe_torch
from vramancer_node.logs import get_logger

log = get_logger("devices")


def probe_devices(
    root: Path = Path("/"), nvml: Any | None = None, torch_module: Any | None = None
) -> list[DeviceInfo]:
    """This machine's devices, from the first probe of the chain with a usable one.

    ``root`` is where ``/proc``, ``/sys`` and ``/etc`` are read (a fixture tree in
    tests); ``nvml`` and ``torch_module`` stand in for ``pynvml`` and ``torch``
    (imported on demand when ``None``).
    """
    chain: tuple[tuple[str, Callable[[], list[DeviceInfo]]], ...] = (
        ("nvml", lambda: probe_nvml(nvml)),
        ("jetson", lambda: probe_jetson(root)),
        ("torch", lambda: probe_torch(torch_module)),
    )
    for name, probe in chain:
        try:
            devices = probe()
        except ProbeUnavailable as exc:
            log.debug("%s probe unavailable: %s", name, exc)
            continue
        except DeviceProbeError as exc:
            log.warning("%s probe failed, trying the next one: %s", name, exc)
            continue
        if any(device.usable for device in devices):
            log.debug("%s probe found %d device(s)", name, len(devices))
            return devices
        log.warning("%s probe found no usable device, trying the next one", name)
    return probe_cpu(root)
