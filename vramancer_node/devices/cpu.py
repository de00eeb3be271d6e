"""CPU-only machines and boards: Raspberry Pi, other ARM boards, x86 servers, laptops.

Theory of operation
-------------------
The last probe of the chain; it always reports exactly one ``cpu`` device, so every
member publishes at least its RAM.

* Memory: ``MemTotal`` / ``MemAvailable`` of ``/proc/meminfo``.
* Cores: the ``processor`` entries of ``/proc/cpuinfo`` (logical CPUs).  When the file
  lists none and ``root`` is the real ``/``, ``os.cpu_count()``; otherwise absent.
* Name, first found of:

  1. the device-tree model (ARM boards: ``Raspberry Pi 5 Model B Rev 1.0``) — the
     board says more than the core (``ARMv8 Processor rev 1 (v8l)``),
  2. ``Model`` of ``/proc/cpuinfo`` (the Raspberry Pi kernel's board line, present
     even where ``/proc/device-tree`` is hidden, e.g. in a container),
  3. ``model name`` of ``/proc/cpuinfo`` (x86; 32-bit ARM kernels),
  4. the machine architecture (``platform.machine()``, e.g. ``aarch64``).

  Keys are case-sensitive: x86's ``model`` is a number, not a name.
* Raspberry Pi: detected by the device-tree model containing
  :data:`RASPBERRY_PI_MARKER` (:func:`is_raspberry_pi`); its kind stays ``cpu``.
* Compute estimate: absent.  Peak CPU FLOP/s depends on SIMD width, FMA units and
  sustained clocks that ``/proc`` does not state; a guess would mislead placement.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from vramancer_node.devices.model import DeviceInfo
from vramancer_node.devices.procfs import read_cpuinfo, read_device_tree_model, read_meminfo
from vramancer_node.logs import get_logger

log = get_logger("devices")

RASPBERRY_PI_MARKER = "Raspberry Pi"
"""Substring of the device-tree model on every Raspberry Pi (``Raspberry Pi 5 Model B``)."""
REAL_ROOT = Path("/")
CPUINFO_NAME_KEYS = ("Model", "model name")
"""``/proc/cpuinfo`` keys holding a name, in order of preference (case-sensitive)."""


def is_raspberry_pi(root: Path = REAL_ROOT) -> bool:
    """True when the device-tree model names a Raspberry Pi."""
    model = read_device_tree_model(root)
    return model is not None and RASPBERRY_PI_MARKER in model


def _name(board: str | None, cpuinfo_fields: dict[str, str]) -> str:
    if board is not None:
        return board
    for key in CPUINFO_NAME_KEYS:
        value = cpuinfo_fields.get(key)
        if value:
            return value
    return platform.machine() or "cpu"


def probe_cpu(root: Path = REAL_ROOT) -> list[DeviceInfo]:
    """One ``cpu`` device: RAM, logical cores and a name; never raises for missing files."""
    memory = read_meminfo(root)
    cpuinfo = read_cpuinfo(root)
    board = read_device_tree_model(root)
    if board is not None and RASPBERRY_PI_MARKER in board:
        log.debug("Raspberry Pi board: %s", board)
    cores: int | None = cpuinfo.logical_cpus or None
    if cores is None and root == REAL_ROOT:
        cores = os.cpu_count()
    return [
        DeviceInfo(
            kind="cpu",
            name=_name(board, cpuinfo.fields),
            memory_total_bytes=memory.total_bytes,
            memory_free_bytes=memory.available_bytes,
            cores=cores,
        )
    ]
