"""Reading the Linux pseudo-files the board probes share, under a chosen root.

Theory of operation
-------------------
Every path is taken relative to ``root`` (``/`` in production, a recorded tree in
tests), so the Jetson and CPU probes run unchanged against fixtures.  Files read:

``proc/meminfo``
    ``MemTotal`` and ``MemAvailable`` in kB (the kernel's kB are KiB).  On a Jetson
    or a CPU board this is the memory a model can use: the GPU shares it.
    ``MemAvailable`` (Linux >= 3.14) counts reclaimable cache as free; ``MemFree``
    does not and would understate what a model can get, so it is never substituted.
``proc/cpuinfo``
    ``key : value`` lines, one block per logical CPU (``processor`` lines).  Keys are
    case-sensitive: x86 has ``model`` (a number) *and* ``model name`` (the string);
    a Raspberry Pi has ``Model`` (the board).
``proc/device-tree/model``
    The board name on device-tree machines (ARM boards), NUL-terminated.  Also found
    at ``sys/firmware/devicetree/base/model``; ``/proc/device-tree`` links there.

Resource handling: every read is bounded by :data:`PSEUDO_FILE_BYTES_MAX`.
Error handling: a missing or unreadable file reads as ``None`` — absent, not an error;
the probes decide what absence means.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PSEUDO_FILE_BYTES_MAX = 4 * 1024 * 1024
"""Upper bound on one pseudo-file read; ``/proc/cpuinfo`` of a 512-thread host is ~1 MiB."""

MEMINFO_PATH = "proc/meminfo"
CPUINFO_PATH = "proc/cpuinfo"
DEVICE_TREE_MODEL_PATHS = ("proc/device-tree/model", "sys/firmware/devicetree/base/model")
MEMINFO_UNIT_BYTES = {"kB": 1024, "": 1}
"""``/proc/meminfo`` units: ``kB`` means KiB; counters such as HugePages have none."""


@dataclass(frozen=True, kw_only=True, slots=True)
class MemInfo:
    """The two ``/proc/meminfo`` values the probes publish."""

    total_bytes: int | None
    """``MemTotal``; ``None`` when unreadable."""
    available_bytes: int | None
    """``MemAvailable``; ``None`` when unreadable or absent (kernel < 3.14)."""


def read_text(root: Path, relative: str) -> str | None:
    """The text of ``root/relative``, or ``None`` when it is missing or unreadable."""
    try:
        with (root / relative).open("rb") as file:
            data = file.read(PSEUDO_FILE_BYTES_MAX)
    except OSError:
        return None
    return data.decode("utf-8", errors="replace")


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` as ``{key: bytes}``; malformed lines are skipped."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        fields = rest.split()
        if not sep or not fields or not (fields[0].isascii() and fields[0].isdigit()):
            continue
        unit = fields[1] if len(fields) > 1 else ""
        scale = MEMINFO_UNIT_BYTES.get(unit)
        if scale is not None:
            values[key.strip()] = int(fields[0]) * scale
    return values


def read_meminfo(root: Path) -> MemInfo:
    """``MemTotal`` and ``MemAvailable`` of the machine under ``root``."""
    text = read_text(root, MEMINFO_PATH)
    values = parse_meminfo(text) if text is not None else {}
    return MemInfo(total_bytes=values.get("MemTotal"), available_bytes=values.get("MemAvailable"))


@dataclass(frozen=True, kw_only=True, slots=True)
class CpuInfo:
    """What ``/proc/cpuinfo`` says about the CPU and the board."""

    logical_cpus: int
    """Number of ``processor`` entries (0 when the file is unreadable)."""
    fields: dict[str, str]
    """First value seen for each key, keys case-sensitive (``model`` != ``Model``)."""


def parse_cpuinfo(text: str) -> CpuInfo:
    """``/proc/cpuinfo`` reduced to the processor count and the first value per key."""
    fields: dict[str, str] = {}
    processors = 0
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "processor":
            processors += 1
        fields.setdefault(key, value)
    return CpuInfo(logical_cpus=processors, fields=fields)


def read_cpuinfo(root: Path) -> CpuInfo:
    """The parsed ``/proc/cpuinfo`` under ``root`` (empty when unreadable)."""
    return parse_cpuinfo(read_text(root, CPUINFO_PATH) or "")


def read_device_tree_model(root: Path) -> str | None:
    """The device-tree board name without its NUL terminator; ``None`` when absent."""
    for relative in DEVICE_TREE_MODEL_PATHS:
        text = read_text(root, relative)
        if text is not None:
            model = text.replace("\x00", "").strip()
            return model or None
    return None
