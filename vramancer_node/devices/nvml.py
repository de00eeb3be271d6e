"""NVIDIA GPUs through NVML (``pynvml``, from the nvidia-ml-py distribution).

Theory of operation
-------------------
One probe is one NVML session: ``nvmlInit``, then per GPU index
``nvmlDeviceGetHandleByIndex``, ``nvmlDeviceGetName``, ``nvmlDeviceGetMemoryInfo``
(required), and for the compute estimate ``nvmlDeviceGetCudaComputeCapability``,
``nvmlDeviceGetMaxClockInfo(NVML_CLOCK_SM)`` (MHz) and the core count — from
``nvmlDeviceGetNumGpuCores`` where the driver has it, else the SM count of
``nvmlDeviceGetAttributes`` times the cores per SM of the compute capability.  The
estimate is ``cores * 2 * max_sm_clock_hz / 1e12`` (:mod:`.compute`).  Then
``nvmlShutdown``, always, once ``nvmlInit`` succeeded.  NVML reference-counts
init/shutdown, so a session per probe leaves no state behind between refreshes
and never disturbs another NVML user in the process (torch's own checks).  Where
persistence mode is off and nothing else holds a GPU open, ``nvmlInit`` makes the
driver set the GPU up again (up to seconds per GPU): run ``nvidia-persistenced``, as
data-centre installs do.

NVML lists GPUs in PCI bus order; CUDA ordinals follow ``CUDA_DEVICE_ORDER``
(fastest first by default), so ``DeviceInfo.index`` is the NVML index.  With MIG
enabled the parent GPU's memory is reported, not the instances'.

Error handling
--------------
Every ``NVMLError`` is translated here, by its return code (``exc.value``):

* The library or driver is missing (``LIBRARY_NOT_FOUND``, ``DRIVER_NOT_LOADED``),
  ``pynvml`` is not importable, or NVML counts no GPU: :class:`ProbeUnavailable` —
  not an NVIDIA machine (or a Jetson); the chain tries the next probe.
* Any other error of ``nvmlInit`` / ``nvmlDeviceGetCount``: :class:`ProbeFailed`.
* ``GPU_IS_LOST`` or ``RESET_REQUIRED`` from one GPU: :class:`DeviceLost`; that GPU
  is reported with ``error="gpu_lost"`` and logged, the others are unaffected.
* ``NOT_SUPPORTED`` from a required query (a Jetson's NVML cannot report the
  memory of its integrated GPU): :class:`DeviceUnsupported`, logged at debug level.
  When no GPU could be queried for that reason the whole probe is
  :class:`ProbeUnavailable`, so a Jetson falls through to its own probe without a
  warning every refresh.
* Any other error of a required query on one GPU: :class:`DeviceQueryFailed`, the
  GPU reported with ``error="query_failed"``.
* ``NOT_SUPPORTED``, ``FUNCTION_NOT_FOUND`` or ``NO_PERMISSION`` from an optional
  query, or the function missing from an old ``pynvml``: that value is ``None``.

A failed ``nvmlShutdown`` is logged and otherwise ignored: the values were read.
The ``nvml`` argument is the library boundary: tests pass a stand-in with the same
functions, constants and exception classes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, NoReturn

from vramancer_node.devices.compute import cuda_cores_from_sms, peak_fp32_tflops
from vramancer_node.devices.errors import (
    DeviceLost,
    DeviceQueryFailed,
    DeviceUnsupported,
    ProbeFailed,
    ProbeUnavailable,
)
from vramancer_node.devices.model import DeviceInfo
from vramancer_node.logs import get_logger

log = get_logger("devices")

HZ_PER_MHZ = 1_000_000

UNAVAILABLE_CODES = ("NVML_ERROR_LIBRARY_NOT_FOUND", "NVML_ERROR_DRIVER_NOT_LOADED")
"""Return codes meaning "no usable NVIDIA driver here": try the next probe."""
LOST_CODES = ("NVML_ERROR_GPU_IS_LOST", "NVML_ERROR_RESET_REQUIRED")
"""Return codes meaning the GPU is gone until a reset."""
UNSUPPORTED_CODES = ("NVML_ERROR_NOT_SUPPORTED",)
"""Return code of a required query the device cannot answer (integrated GPUs)."""
ABSENT_CODES = (
    "NVML_ERROR_NOT_SUPPORTED",
    "NVML_ERROR_FUNCTION_NOT_FOUND",
    "NVML_ERROR_NO_PERMISSION",
)
"""Return codes of an optional query that mean "this value is unknown here"."""


def _codes(nvml: Any, names: tuple[str, ...]) -> set[int]:
    return {int(getattr(nvml, name)) for name in names if hasattr(nvml, name)}


def _code(exc: BaseException) -> int | None:
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


def _library_error(nvml: Any, exc: BaseException, call: str) -> NoReturn:
    if _code(exc) in _codes(nvml, UNAVAILABLE_CODES):
        raise ProbeUnavailable(f"NVML unavailable: {call}: {exc}") from exc
    raise ProbeFailed(f"NVML failed: {call}: {exc}") from exc


def _device_error(nvml: Any, exc: BaseException, index: int, call: str) -> NoReturn:
    if _code(exc) in _codes(nvml, LOST_CODES):
        raise DeviceLost(index, f"{call}: {exc}") from exc
    if _code(exc) in _codes(nvml, UNSUPPORTED_CODES):
        raise DeviceUnsupported(index, f"{call}: {exc}") from exc
    raise DeviceQueryFailed(index, f"{call}: {exc}") from exc


def _required(nvml: Any, index: int, call: str, *args: Any) -> Any:
    try:
        return getattr(nvml, call)(*args)
    except nvml.NVMLError as exc:
        _device_error(nvml, exc, index, call)


def _optional(nvml: Any, index: int, call: str, *args: Any) -> Any:
    function: Callable[..., Any] | None = getattr(nvml, call, None)
    if function is None:
        return None
    try:
        return function(*args)
    except nvml.NVMLError as exc:
        if _code(exc) in _codes(nvml, ABSENT_CODES):
            log.debug("NVML %s not available on GPU %d: %s", call, index, exc)
            return None
        _device_error(nvml, exc, index, call)


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def _capability(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    major, minor = value
    return int(major), int(minor)


def _cuda_cores(
    nvml: Any, index: int, handle: Any, capability: tuple[int, int] | None
) -> int | None:
    cores = _optional(nvml, index, "nvmlDeviceGetNumGpuCores", handle)
    if cores:
        return int(cores)
    attributes = _optional(nvml, index, "nvmlDeviceGetAttributes", handle)
    sm_count = getattr(attributes, "multiprocessorCount", None)
    return cuda_cores_from_sms(int(sm_count) if sm_count else None, capability)


def _query(nvml: Any, index: int) -> DeviceInfo:
    handle = _required(nvml, index, "nvmlDeviceGetHandleByIndex", index)
    name = _text(_required(nvml, index, "nvmlDeviceGetName", handle))
    memory = _required(nvml, index, "nvmlDeviceGetMemoryInfo", handle)
    capability = _capability(_optional(nvml, index, "nvmlDeviceGetCudaComputeCapability", handle))
    clock_mhz = _optional(nvml, index, "nvmlDeviceGetMaxClockInfo", handle, nvml.NVML_CLOCK_SM)
    cores = _cuda_cores(nvml, index, handle, capability)
    clock_hz = int(clock_mhz) * HZ_PER_MHZ if clock_mhz else None
    return DeviceInfo(
        kind="cuda",
        index=index,
        name=name,
        memory_total_bytes=int(memory.total),
        memory_free_bytes=int(memory.free),
        compute_tflops=peak_fp32_tflops(cores, clock_hz),
        compute_capability=capability,
    )


def _probe_gpu(nvml: Any, index: int) -> DeviceInfo:
    try:
        return _query(nvml, index)
    except DeviceUnsupported as exc:
        log.debug("GPU %d cannot be queried through NVML: %s", index, exc)
        return DeviceInfo(kind="cuda", index=index, error=exc.code)
    except DeviceQueryFailed as exc:
        log.warning("GPU %d reported with error %s: %s", index, exc.code, exc)
        return DeviceInfo(kind="cuda", index=index, error=exc.code)


def _import_pynvml() -> Any:
    try:
        return importlib.import_module("pynvml")
    except ImportError as exc:
        raise ProbeUnavailable(f"pynvml is not installed: {exc}") from exc


def probe_nvml(nvml: Any | None = None) -> list[DeviceInfo]:
    """Every GPU NVML sees, in NVML index order; errors translated as documented above.

    ``nvml`` is the ``pynvml`` module (imported when ``None``) or a stand-in for it.
    """
    lib = _import_pynvml() if nvml is None else nvml
    try:
        lib.nvmlInit()
    except lib.NVMLError as exc:
        _library_error(lib, exc, "nvmlInit")
    try:
        try:
            count = int(lib.nvmlDeviceGetCount())
        except lib.NVMLError as exc:
            _library_error(lib, exc, "nvmlDeviceGetCount")
        if count == 0:
            raise ProbeUnavailable("NVML sees no GPU")
        devices = [_probe_gpu(lib, index) for index in range(count)]
        if all(device.error == DeviceUnsupported.code for device in devices):
            raise ProbeUnavailable("NVML cannot query these GPUs (integrated GPU?)")
        return devices
    finally:
        try:
            lib.nvmlShutdown()
        except lib.NVMLError as exc:
            log.warning("nvmlShutdown failed: %s", exc)
