"""DeviceMonitor on a virtual clock, driven by scripted probe results.

The probe runs in a real worker thread, so the tests never wait for it with a sleep
(the autojump clock would race it): the scripted probe signals the test through
``trio.from_thread`` once the script is used up, and the monitor, which probes one
result at a time, has by then handled every scripted result.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace

import pytest
import trio
import trio.testing

from vramancer_node.devices import DeviceInfo, DeviceMonitor, significant_change

GIB = 1024**3
INTERVAL_S = 10.0
FRACTION = 0.01
STUCK_PROBE_RELEASE_S = 5.0
"""Real seconds after which a wrongly awaited stuck probe is let go (failure path only)."""
GPU = DeviceInfo(
    kind="cuda",
    index=0,
    name="NVIDIA GeForce RTX 4090",
    memory_total_bytes=100 * GIB,
    memory_free_bytes=80 * GIB,
    compute_tflops=82.575,
)
ONE_PERCENT = GPU.memory_total_bytes // 100  # type: ignore[operator]
CPU = DeviceInfo(kind="cpu", name="AMD EPYC", memory_total_bytes=64 * GIB, cores=8)

Step = list[DeviceInfo] | Exception


def free(device: DeviceInfo, delta_bytes: int) -> DeviceInfo:
    assert device.memory_free_bytes is not None
    return replace(device, memory_free_bytes=device.memory_free_bytes + delta_bytes)


class ScriptedProbe:
    """Returns (or raises) the scripted steps in order; past the end, sets ``used_up``."""

    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps
        self.times: list[float] = []
        self.used_up = trio.Event()
        self._last: list[DeviceInfo] = []

    def __call__(self) -> list[DeviceInfo]:
        self.times.append(trio.from_thread.run_sync(trio.current_time))
        index = len(self.times) - 1
        if index >= len(self.steps):
            trio.from_thread.run_sync(self.used_up.set)
            return list(self._last)
        step = self.steps[index]
        if isinstance(step, Exception):
            raise step
        self._last = step
        return list(step)


async def run_script(
    steps: list[Step], **options: float
) -> tuple[list[DeviceInfo], list[list[DeviceInfo]], ScriptedProbe, DeviceMonitor]:
    """Run a monitor over ``steps``: (started value, on_change calls, probe, monitor)."""
    probe = ScriptedProbe(steps)
    changes: list[list[DeviceInfo]] = []
    monitor = DeviceMonitor(changes.append, probe=probe, refresh_interval_s=INTERVAL_S, **options)
    async with trio.open_nursery() as nursery:
        first = await nursery.start(monitor.run)
        await probe.used_up.wait()
        nursery.cancel_scope.cancel()
    return first, changes, probe, monitor


async def test_started_after_the_first_probe_with_its_devices(
    autojump_clock: trio.testing.MockClock,
) -> None:
    probe = ScriptedProbe([[GPU]])
    monitor = DeviceMonitor(lambda devices: None, probe=probe, refresh_interval_s=INTERVAL_S)
    async with trio.open_nursery() as nursery:
        first = await nursery.start(monitor.run)
        assert first == [GPU]
        assert len(probe.times) == 1
        assert monitor.devices == [GPU]
        nursery.cancel_scope.cancel()


async def test_on_change_only_for_real_changes(autojump_clock: trio.testing.MockClock) -> None:
    small = free(GPU, -ONE_PERCENT // 2)
    big = free(GPU, -ONE_PERCENT * 3)
    renamed = replace(big, name="NVIDIA GeForce RTX 4090 D")
    second = replace(GPU, index=1)
    steps: list[Step] = [
        [GPU],
        [GPU],  # identical: nothing
        [small],  # 0.5 % of total: below the threshold
        [big],  # 3 %: reported
        [big],
        [renamed],  # any other field: reported
        [renamed, second],  # a device appeared: reported
        [renamed, second],
        [replace(renamed, memory_free_bytes=None), second],  # free became unknown: reported
    ]
    first, changes, probe, monitor = await run_script(steps)
    assert first == [GPU]
    assert changes == [
        [big],
        [renamed],
        [renamed, second],
        [replace(renamed, memory_free_bytes=None), second],
    ]
    assert monitor.changes_total == 4
    assert probe.times[: len(steps)] == [i * INTERVAL_S for i in range(len(steps))]


async def test_slow_drift_is_reported_once_it_adds_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    step_bytes = ONE_PERCENT * 6 // 10  # 0.6 % per probe
    steps: list[Step] = [[free(GPU, -step_bytes * i)] for i in range(5)]
    _, changes, _, monitor = await run_script(steps)
    # Compared with the last *reported* list: 1.2 % after two probes, 1.2 % after four more.
    assert changes == [[free(GPU, -step_bytes * 2)], [free(GPU, -step_bytes * 4)]]
    assert monitor.devices == [free(GPU, -step_bytes * 4)]


async def test_threshold_is_configurable(autojump_clock: trio.testing.MockClock) -> None:
    steps: list[Step] = [[GPU], [free(GPU, -ONE_PERCENT * 3)]]
    _, changes, _, _ = await run_script(steps, memory_free_change_fraction=0.05)
    assert changes == []


async def test_probe_failures_are_logged_and_never_crash_the_monitor(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    steps: list[Step] = [
        RuntimeError("first probe exploded"),
        [CPU],  # after a failed first probe anything is news
        OSError("NVML hung up"),  # keeps the previous devices, reports nothing
        [CPU],
        [GPU],
    ]
    with caplog.at_level(logging.ERROR, logger="vramancer.devices"):
        first, changes, _, monitor = await run_script(steps)
    assert first == []
    assert changes == [[CPU], [GPU]]
    assert monitor.probe_failures_total == 2
    assert "first probe exploded" in caplog.text and "NVML hung up" in caplog.text


async def test_shutdown_does_not_wait_for_a_stuck_probe(
    autojump_clock: trio.testing.MockClock,
) -> None:
    entered = trio.Event()
    release = threading.Event()
    finished = threading.Event()
    calls = 0

    def probe() -> list[DeviceInfo]:
        nonlocal calls
        calls += 1
        if calls == 2:
            trio.from_thread.run_sync(entered.set)
            release.wait()
            finished.set()
        return [CPU]

    monitor = DeviceMonitor(lambda devices: None, probe=probe, refresh_interval_s=INTERVAL_S)
    # Should shutdown wait for the thread after all, this unblocks it (and fails the test).
    unblock = threading.Timer(STUCK_PROBE_RELEASE_S, release.set)
    unblock.start()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor.run)
            await entered.wait()
            nursery.cancel_scope.cancel()
        assert not finished.is_set(), "shutdown waited for the stuck probe"
        assert monitor.devices == [CPU]
    finally:
        release.set()
        unblock.cancel()


@pytest.mark.parametrize(
    "options",
    [
        {"refresh_interval_s": 0.0},
        {"refresh_interval_s": 1e9},
        {"memory_free_change_fraction": -0.1},
        {"memory_free_change_fraction": 1.0},
        {"memory_free_change_fraction": float("nan")},
    ],
)
def test_settings_are_validated_with_the_allowed_range(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"must be in \["):
        DeviceMonitor(lambda devices: None, probe=list, **options)


@pytest.mark.parametrize(
    ("old", "new", "changed"),
    [
        ([GPU], [GPU], False),
        ([GPU], [free(GPU, ONE_PERCENT)], False),  # exactly 1 %: not more than
        ([GPU], [free(GPU, ONE_PERCENT + 1)], True),
        ([GPU], [free(GPU, -ONE_PERCENT - 1)], True),
        ([GPU], [replace(GPU, compute_tflops=None)], True),
        ([GPU], [replace(GPU, error="gpu_lost")], True),
        ([GPU], [], True),
        ([], [], False),
        ([replace(GPU, memory_total_bytes=None)], [replace(GPU, memory_total_bytes=None)], False),
        (
            [replace(GPU, memory_total_bytes=None)],
            [free(replace(GPU, memory_total_bytes=None), 1)],
            True,  # total unknown: any move counts
        ),
    ],
)
def test_significant_change(old: list[DeviceInfo], new: list[DeviceInfo], changed: bool) -> None:
    assert significant_change(old, new, memory_free_change_fraction=FRACTION) is changed
