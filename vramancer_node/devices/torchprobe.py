"""GPUs as torch sees them, for machines where NVML is missing.

Theory of operation
-------------------
NVML is the preferred source (it reads memory without touching CUDA).  Where it is
missing — a container without ``libnvidia-ml``, a ROCm build of torch (HIP answers
through ``torch.cuda``), an Apple Silicon Mac — torch is asked instead.  torch is
imported lazily, on the first probe that gets this far: it is large and slow to
import, and most machines never need it here.

CUDA (``torch.cuda.is_available()``), per ordinal:
    ``get_device_properties(i)``: ``name``, ``major``/``minor``;
    ``mem_get_info(i)``: ``(free, total)`` bytes.
    ``mem_get_info`` creates a CUDA context on the device (a few hundred MiB of its
    memory) which stays for the life of the process; that is the price of this
    fallback, and the runtime creates the same context when it uses the GPU.  torch
    states no SM clock without NVML, so the compute estimate is absent.
MPS (``torch.backends.mps.is_available()``), one device:
    name from ``torch.backends.mps.get_name()`` where this torch has it;
    total = ``torch.mps.recommended_max_memory()`` (Metal's working-set limit, the
    memory a model can use); free is absent — unified memory is shared with every
    other process and Metal does not report what is left.

Error handling: torch missing, or neither backend available, is
:class:`ProbeUnavailable`.  A ``RuntimeError`` (CUDA errors are ``RuntimeError``
subclasses) while querying one GPU reports that GPU with ``error="query_failed"``.
"""

from __future__ import annotations

import importlib
from typing import Any

from vramancer_node.devices.errors import DeviceQueryFailed, ProbeUnavailable
from vramancer_node.devices.model import DeviceInfo
from vramancer_node.logs import get_logger

log = get_logger("devices")

MPS_DEFAULT_NAME = "Apple GPU (MPS)"
"""Name of the MPS device when this torch cannot tell the chip's name."""


def _import_torch() -> Any:
    try:
        return importlib.import_module("torch")
    except ImportError as exc:
        raise ProbeUnavailable(f"torch is not installed: {exc}") from exc


def _cuda_device(torch: Any, index: int) -> DeviceInfo:
    try:
        props = torch.cuda.get_device_properties(index)
        free_bytes, total_bytes = torch.cuda.mem_get_info(index)
    except RuntimeError as exc:
        error = DeviceQueryFailed(index, f"torch.cuda: {exc}")
        log.warning("GPU %d reported with error %s: %s", index, error.code, error)
        return DeviceInfo(kind="cuda", index=index, error=error.code)
    return DeviceInfo(
        kind="cuda",
        index=index,
        name=str(props.name),
        memory_total_bytes=int(total_bytes),
        memory_free_bytes=int(free_bytes),
        compute_capability=(int(props.major), int(props.minor)),
    )


def _mps_device(torch: Any) -> DeviceInfo:
    get_name = getattr(torch.backends.mps, "get_name", None)
    recommended = getattr(torch.mps, "recommended_max_memory", None)
    return DeviceInfo(
        kind="mps",
        name=str(get_name()) if get_name is not None else MPS_DEFAULT_NAME,
        memory_total_bytes=int(recommended()) if recommended is not None else None,
    )


def _mps_available(torch: Any) -> bool:
    mps = getattr(getattr(torch, "backends", None), "mps", None)
    return mps is not None and bool(mps.is_available())


def probe_torch(torch_module: Any | None = None) -> list[DeviceInfo]:
    """CUDA devices (by ordinal) or the MPS device, through ``torch_module`` (or ``torch``)."""
    torch = _import_torch() if torch_module is None else torch_module
    if torch.cuda.is_available():
        return [_cuda_device(torch, index) for index in range(torch.cuda.device_count())]
    if _mps_available(torch):
        return [_mps_device(torch)]
    raise ProbeUnavailable("torch sees neither CUDA nor MPS")
