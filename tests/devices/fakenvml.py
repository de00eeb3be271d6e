"""A stand-in for the ``pynvml`` module at the library boundary, and a fake ``torch``.

:class:`FakeNvml` has the functions the NVML probe calls, under pynvml's names, and
carries pynvml's own constants and exception classes, so errors are raised exactly
as the real library raises them (``pynvml.NVMLError_GpuIsLost`` and friends).  Like
the real library it refuses device calls outside an ``nvmlInit``/``nvmlShutdown``
session, and it records every call so tests can check that shutdown always happens.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pynvml

MIB = 1024**2
GIB = 1024**3


@dataclass
class FakeGpu:
    """One GPU as the fake NVML reports it."""

    name: str | bytes
    memory_total_bytes: int
    memory_free_bytes: int
    capability: tuple[int, int]
    max_sm_clock_mhz: int
    sm_count: int
    cuda_cores: int | None
    """``None``: the driver answers NOT_SUPPORTED to ``nvmlDeviceGetNumGpuCores``."""


RTX_4090 = FakeGpu(
    name="NVIDIA GeForce RTX 4090",
    memory_total_bytes=24 * GIB,
    memory_free_bytes=23 * GIB + 512 * MIB,
    capability=(8, 9),
    max_sm_clock_mhz=2520,
    sm_count=128,
    cuda_cores=16384,
)
A100_40GB = FakeGpu(
    name="NVIDIA A100-SXM4-40GB",
    memory_total_bytes=40 * GIB,
    memory_free_bytes=39 * GIB,
    capability=(8, 0),
    max_sm_clock_mhz=1410,
    sm_count=108,
    cuda_cores=None,
)


@dataclass(frozen=True)
class FakeHandle:
    index: int


class FakeNvml:
    """``pynvml`` stand-in serving ``gpus``; ``failures[(call, index)]`` is raised on that call.

    ``index`` is ``None`` for library-level calls (``nvmlInit``, ``nvmlDeviceGetCount``,
    ``nvmlShutdown``).  Names in ``missing`` behave as functions an old pynvml lacks.
    """

    def __init__(
        self,
        gpus: list[FakeGpu],
        *,
        failures: dict[tuple[str, int | None], Exception] | None = None,
        missing: frozenset[str] = frozenset(),
    ) -> None:
        for name in dir(pynvml):
            if name.startswith(("NVMLError", "NVML_")):
                setattr(self, name, getattr(pynvml, name))
        self.gpus = gpus
        self.failures = failures or {}
        self.missing = missing
        self.calls: list[tuple[str, int | None]] = []
        self.sessions_open = 0

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("nvml") and name in object.__getattribute__(self, "missing"):
            raise AttributeError(name)
        return object.__getattribute__(self, name)

    def _enter(self, call: str, index: int | None) -> None:
        self.calls.append((call, index))
        if call != "nvmlInit" and self.sessions_open == 0:
            raise pynvml.NVMLError_Uninitialized()
        failure = self.failures.get((call, index))
        if failure is not None:
            raise failure

    def called(self, call: str) -> int:
        return sum(1 for name, _ in self.calls if name == call)

    def nvmlInit(self) -> None:
        self._enter("nvmlInit", None)
        self.sessions_open += 1

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown", None)
        self.sessions_open -= 1

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount", None)
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        self._enter("nvmlDeviceGetHandleByIndex", index)
        if not 0 <= index < len(self.gpus):
            raise pynvml.NVMLError_InvalidArgument()
        return FakeHandle(index)

    def nvmlDeviceGetName(self, handle: FakeHandle) -> str | bytes:
        self._enter("nvmlDeviceGetName", handle.index)
        return self.gpus[handle.index].name

    def nvmlDeviceGetMemoryInfo(self, handle: FakeHandle) -> SimpleNamespace:
        self._enter("nvmlDeviceGetMemoryInfo", handle.index)
        gpu = self.gpus[handle.index]
        used = gpu.memory_total_bytes - gpu.memory_free_bytes
        return SimpleNamespace(total=gpu.memory_total_bytes, free=gpu.memory_free_bytes, used=used)

    def nvmlDeviceGetCudaComputeCapability(self, handle: FakeHandle) -> tuple[int, int]:
        self._enter("nvmlDeviceGetCudaComputeCapability", handle.index)
        return self.gpus[handle.index].capability

    def nvmlDeviceGetMaxClockInfo(self, handle: FakeHandle, clock_type: int) -> int:
        self._enter("nvmlDeviceGetMaxClockInfo", handle.index)
        if clock_type != pynvml.NVML_CLOCK_SM:
            raise pynvml.NVMLError_InvalidArgument()
        return self.gpus[handle.index].max_sm_clock_mhz

    def nvmlDeviceGetNumGpuCores(self, handle: FakeHandle) -> int:
        self._enter("nvmlDeviceGetNumGpuCores", handle.index)
        cores = self.gpus[handle.index].cuda_cores
        if cores is None:
            raise pynvml.NVMLError_NotSupported()
        return cores

    def nvmlDeviceGetAttributes(self, handle: FakeHandle) -> SimpleNamespace:
        self._enter("nvmlDeviceGetAttributes", handle.index)
        return SimpleNamespace(multiprocessorCount=self.gpus[handle.index].sm_count)


def nvml_without_library() -> FakeNvml:
    """What pynvml does on a machine without ``libnvidia-ml.so.1``."""
    return FakeNvml([], failures={("nvmlInit", None): pynvml.NVMLError_LibraryNotFound()})


@dataclass
class FakeCudaProps:
    name: str
    major: int
    minor: int
    total_memory: int
    multi_processor_count: int


class FakeTorch:
    """The slice of ``torch`` the torch probe uses; ``calls`` records what was asked."""

    def __init__(
        self,
        cuda: list[tuple[FakeCudaProps, int]] | None = None,
        *,
        mps_name: str | None = None,
        mps_recommended_bytes: int | None = None,
        mps: bool = False,
        cuda_errors: dict[int, Exception] | None = None,
    ) -> None:
        self.calls: list[str] = []
        devices = cuda or []
        errors = cuda_errors or {}

        def record(name: str, value: Any) -> Any:
            def call(*args: Any) -> Any:
                self.calls.append(name)
                result = value(*args) if callable(value) else value
                return result

            return call

        def mem_get_info(index: int) -> tuple[int, int]:
            if index in errors:
                raise errors[index]
            props, free = devices[index]
            return free, props.total_memory

        self.cuda = SimpleNamespace(
            is_available=record("cuda.is_available", bool(devices)),
            device_count=record("cuda.device_count", len(devices)),
            get_device_properties=record("cuda.get_device_properties", lambda i: devices[i][0]),
            mem_get_info=record("cuda.mem_get_info", mem_get_info),
        )
        mps_backend = SimpleNamespace(is_available=record("mps.is_available", mps))
        if mps_name is not None:
            mps_backend.get_name = record("mps.get_name", mps_name)
        self.backends = SimpleNamespace(mps=mps_backend)
        self.mps = SimpleNamespace()
        if mps_recommended_bytes is not None:
            self.mps.recommended_max_memory = record(
                "mps.recommended_max_memory", mps_recommended_bytes
            )
