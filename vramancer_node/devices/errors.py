"""What went wrong while probing devices, translated at the library boundary.

Each probe talks to one outside source (NVML, torch, the Jetson's sysfs, ``/proc``)
and turns that source's errors into these, with ``raise ... from exc`` so the
original stays attached::

    DeviceProbeError            base: a probe could not report (never escapes the monitor)
    ├── ProbeUnavailable        this probe does not apply here: no library, no driver,
    │                           no device, not this kind of board.  Expected; the chain
    │                           in :mod:`.probe` quietly tries the next probe.
    ├── ProbeFailed             the probe applies but its source failed as a whole
    │                           (NVML refused to initialise, the device count failed).
    │                           Logged as a warning; the chain tries the next probe.
    └── DeviceQueryFailed       one device was found but could not be queried; it is
        │                       reported with ``error`` set, the others are unaffected.
        ├── DeviceLost          the GPU fell off the bus or needs a reset
        │                       (NVML ``GPU_IS_LOST`` / ``RESET_REQUIRED``).
        └── DeviceUnsupported   the source cannot answer a required query for this
                                device (NVML ``NOT_SUPPORTED`` for the memory of a
                                Jetson's integrated GPU): not a fault, logged quietly.
"""

from __future__ import annotations


class DeviceProbeError(Exception):
    """Base class of every device-probe error."""


class ProbeUnavailable(DeviceProbeError):
    """The probe does not apply to this machine (library, driver or hardware missing)."""


class ProbeFailed(DeviceProbeError):
    """The probe applies, but its source failed before any device could be listed."""


class DeviceQueryFailed(DeviceProbeError):
    """One device could not be queried.

    ``code`` is the short, stable reason published in ``DeviceInfo.error``; the
    message carries the source's own wording for the log.
    """

    code = "query_failed"

    def __init__(self, index: int, message: str) -> None:
        super().__init__(f"device {index}: {message}")
        self.index = index


class DeviceLost(DeviceQueryFailed):
    """The device is gone until the machine or the GPU is reset."""

    code = "gpu_lost"


class DeviceUnsupported(DeviceQueryFailed):
    """The source does not support a required query on this device."""

    code = "unsupported"
