"""What a probe reports about one device, and its gossip form.

Theory of operation
-------------------
:class:`DeviceInfo` is the local, richer view of a device: besides the four values
every member gossips (kind, name, total and free memory, compute estimate) it keeps
what the runtime and an operator need here — the probe's index, the CUDA compute
capability, the CPU core count, and an ``error`` for a device that was found but
could not be queried.  Every value a probe could not read is ``None``; nothing is
guessed.

:meth:`DeviceInfo.to_dict` is the JSON form (API, ``scripts/gpu_check.py``); absent
values are left out.  :func:`gossip_records` turns a probe result into the
``protocol.membership`` device records of this member's state record: only usable
devices (no error, known total memory), names cut to the record's limit, at most
:data:`~protocol.membership.record.DEVICES_MAX` of them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from protocol.membership.record import DEVICE_KINDS, DEVICE_NAME_CHARS_MAX, DEVICES_MAX
from protocol.membership.record import DeviceInfo as DeviceRecord

DeviceKind = Literal["cuda", "jetson", "mps", "cpu"]
"""NVIDIA CUDA GPU, NVIDIA Jetson (unified memory), Apple MPS, CPU-only machine."""


@dataclass(frozen=True, kw_only=True, slots=True)
class DeviceInfo:
    """One compute device of this machine, as a probe saw it."""

    kind: DeviceKind
    """Which probe family found it; one of ``protocol.membership.record.DEVICE_KINDS``."""
    index: int = 0
    """Position among the devices of this kind as the probe enumerated them: the NVML
    index (PCI bus order) or the torch CUDA ordinal (``CUDA_DEVICE_ORDER`` order);
    0 for the single Jetson, MPS or CPU device."""
    name: str | None = None
    """Model name, e.g. ``NVIDIA H100 80GB HBM3`` or ``Raspberry Pi 5 Model B Rev 1.0``;
    ``None`` only for a device whose query failed before its name was read."""
    memory_total_bytes: int | None = None
    """Memory usable for model weights (unified memory on Jetson and CPU boards)."""
    memory_free_bytes: int | None = None
    """Memory free now (NVML free, ``MemAvailable``, CUDA ``mem_get_info``)."""
    compute_tflops: float | None = None
    """Peak FP32 estimate of :mod:`.compute`; ``None`` when cores or clock are unknown."""
    compute_capability: tuple[int, int] | None = None
    """CUDA compute capability ``(major, minor)``, for CUDA devices that report it."""
    cores: int | None = None
    """Logical CPU cores, for ``cpu`` devices."""
    error: str | None = None
    """Short reason the device could not be queried (``DeviceQueryFailed.code``)."""

    def __post_init__(self) -> None:
        if self.kind not in DEVICE_KINDS:
            raise ValueError(f"kind must be one of {DEVICE_KINDS}, got {self.kind!r}")
        for field in ("index", "memory_total_bytes", "memory_free_bytes", "cores"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{field} must be an int >= 0 or None, got {value!r}")
        tflops = self.compute_tflops
        if tflops is not None and not (math.isfinite(tflops) and tflops >= 0):
            raise ValueError(f"compute_tflops must be a finite float >= 0 or None, got {tflops}")

    @property
    def usable(self) -> bool:
        """True when the device was queried fully enough to place work on it."""
        return self.error is None and bool(self.name) and self.memory_total_bytes is not None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready mapping of the known values; absent ones are left out."""
        out: dict[str, object] = {"kind": self.kind, "index": self.index}
        for field in (
            "name",
            "memory_total_bytes",
            "memory_free_bytes",
            "compute_tflops",
            "cores",
            "error",
        ):
            value = getattr(self, field)
            if value is not None:
                out[field] = value
        if self.compute_capability is not None:
            major, minor = self.compute_capability
            out["compute_capability"] = f"{major}.{minor}"
        return out

    def to_record(self) -> DeviceRecord:
        """The gossiped form; raises ``ValueError`` for a device that is not :attr:`usable`."""
        if not self.usable or not self.name:
            raise ValueError(f"{self.kind} device {self.index} is not usable: {self.error}")
        total = self.memory_total_bytes
        free = self.memory_free_bytes
        if total is not None and free is not None:
            # Sources read total and free at slightly different moments.
            free = min(free, total)
        return DeviceRecord(
            kind=self.kind,
            name=self.name[:DEVICE_NAME_CHARS_MAX],
            memory_total_bytes=total,
            memory_free_bytes=free,
            compute_tflops=self.compute_tflops,
        )


def gossip_records(devices: Iterable[DeviceInfo]) -> tuple[DeviceRecord, ...]:
    """The usable devices as membership records, at most ``DEVICES_MAX`` of them."""
    usable = [device.to_record() for device in devices if device.usable]
    return tuple(usable[:DEVICES_MAX])
