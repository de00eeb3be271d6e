"""The device monitor: re-probe periodically, report only changes that matter.

Theory of operation
-------------------
:meth:`DeviceMonitor.run` is a daemon service.  It probes once, hands the result to
``task_status.started(devices)`` (so ``await nursery.start(monitor.run)`` returns the
first list), then every ``refresh_interval_s`` probes again.  The probe blocks (file
reads, NVML, CUDA), so it runs in a worker thread (``trio.to_thread.run_sync``); the
monitor never runs two probes at once.

:attr:`DeviceMonitor.devices` is always the latest successful probe.  ``on_change``
is called with the new list only when it differs *significantly* from the list last
reported (the first list counts as reported — the caller got it from ``started``):

* the number of devices, or any field other than ``memory_free_bytes``, differs; or
* ``memory_free_bytes`` appeared, vanished, or moved by more than
  ``memory_free_change_fraction`` of the device's total memory (by any amount when
  the total is unknown).

Comparing against the last *reported* list, not the last probed one, lets a slow
drift accumulate until it crosses the threshold instead of never being published.
Every report becomes a new version of this member's gossiped record, hence the
threshold: memory moves a little all the time.

Resource handling
-----------------
One worker thread at a time.  On cancellation the thread is abandoned rather than
waited for (``abandon_on_cancel``): a probe stuck in a driver call must not hold up
shutdown; it owns no shared state and its result is dropped.

Error handling
--------------
A probe that raises is logged with its traceback, counted in
:attr:`DeviceMonitor.probe_failures_total`, and the previous devices are kept (an
empty list when the very first probe failed).  Errors of ``on_change`` are the
caller's and propagate.  ``trio.Cancelled`` passes through.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NoReturn

import trio

from vramancer_node.devices.model import DeviceInfo
from vramancer_node.devices.probe import probe_devices
from vramancer_node.logs import get_logger

log = get_logger("devices")

REFRESH_INTERVAL_S_DEFAULT = 10.0
"""Seconds between probes; free memory changes on model loads, which take longer."""
REFRESH_INTERVAL_S_MIN = 0.1
REFRESH_INTERVAL_S_MAX = 3600.0
MEMORY_FREE_CHANGE_FRACTION_DEFAULT = 0.01
"""A free-memory move above 1 % of the device's total memory is reported."""

_COMPARED_FIELDS = (
    "kind",
    "index",
    "name",
    "memory_total_bytes",
    "compute_tflops",
    "compute_capability",
    "cores",
    "error",
)
"""Every ``DeviceInfo`` field but ``memory_free_bytes``: any difference is a change."""


def _free_memory_changed(old: DeviceInfo, new: DeviceInfo, fraction: float) -> bool:
    before, after = old.memory_free_bytes, new.memory_free_bytes
    if before is None or after is None:
        return before != after
    total = new.memory_total_bytes
    threshold_bytes = fraction * total if total else 0.0
    return abs(after - before) > threshold_bytes


def significant_change(
    old: Sequence[DeviceInfo], new: Sequence[DeviceInfo], *, memory_free_change_fraction: float
) -> bool:
    """True when ``new`` differs from ``old`` enough to publish (see module docstring)."""
    if len(old) != len(new):
        return True
    for before, after in zip(old, new, strict=True):
        if any(getattr(before, field) != getattr(after, field) for field in _COMPARED_FIELDS):
            return True
        if _free_memory_changed(before, after, memory_free_change_fraction):
            return True
    return False


class DeviceMonitor:
    """Keeps this machine's device list fresh and reports significant changes."""

    def __init__(
        self,
        on_change: Callable[[list[DeviceInfo]], None],
        *,
        probe: Callable[[], list[DeviceInfo]] = probe_devices,
        refresh_interval_s: float = REFRESH_INTERVAL_S_DEFAULT,
        memory_free_change_fraction: float = MEMORY_FREE_CHANGE_FRACTION_DEFAULT,
    ) -> None:
        if not REFRESH_INTERVAL_S_MIN <= refresh_interval_s <= REFRESH_INTERVAL_S_MAX:
            raise ValueError(
                f"refresh_interval_s must be in [{REFRESH_INTERVAL_S_MIN}, "
                f"{REFRESH_INTERVAL_S_MAX}], got {refresh_interval_s}"
            )
        if not (
            math.isfinite(memory_free_change_fraction) and 0 <= memory_free_change_fraction < 1
        ):
            raise ValueError(
                f"memory_free_change_fraction must be in [0, 1), got {memory_free_change_fraction}"
            )
        self._on_change = on_change
        self._probe = probe
        self.refresh_interval_s = refresh_interval_s
        self.memory_free_change_fraction = memory_free_change_fraction
        self._latest: list[DeviceInfo] = []
        self._reported: list[DeviceInfo] = []
        self.probes_total = 0
        """Probes attempted."""
        self.probe_failures_total = 0
        """Probes that raised."""
        self.changes_total = 0
        """Calls of ``on_change``."""

    @property
    def devices(self) -> list[DeviceInfo]:
        """The latest successful probe (a copy); empty before the first one."""
        return list(self._latest)

    async def _probe_once(self) -> list[DeviceInfo] | None:
        self.probes_total += 1
        try:
            return await trio.to_thread.run_sync(self._probe, abandon_on_cancel=True)
        except Exception:
            self.probe_failures_total += 1
            log.exception("device probe failed; keeping the previous devices")
            return None

    async def run(
        self, *, task_status: trio.TaskStatus[list[DeviceInfo]] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Probe now, report ``started(devices)``, then re-probe until cancelled."""
        first = await self._probe_once()
        self._latest = self._reported = first if first is not None else []
        log.info("devices probed", extra={"devices": [d.to_dict() for d in self._latest]})
        task_status.started(self.devices)
        while True:
            await trio.sleep(self.refresh_interval_s)
            devices = await self._probe_once()
            if devices is None:
                continue
            self._latest = devices
            if significant_change(
                self._reported,
                devices,
                memory_free_change_fraction=self.memory_free_change_fraction,
            ):
                self._reported = devices
                self.changes_total += 1
                log.info("devices changed", extra={"devices": [d.to_dict() for d in devices]})
                self._on_change(list(devices))
