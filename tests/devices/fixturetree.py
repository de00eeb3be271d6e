"""The recorded filesystem trees under ``fixtures/`` and a way to edit copies of them."""

from __future__ import annotations

import shutil
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
JETSON_ORIN = FIXTURES / "jetson_orin"
RASPBERRY_PI_5 = FIXTURES / "raspberry_pi_5"
X86_SERVER = FIXTURES / "x86_server"
KIB = 1024


def copy_tree(source: Path, tmp_path: Path) -> Path:
    """A writable copy of the fixture tree ``source`` (tests edit copies, never originals)."""
    target = tmp_path / source.name
    shutil.copytree(source, target)
    return target


def meminfo_kib(root: Path, key: str) -> int:
    """The ``key`` value of ``root/proc/meminfo`` in kB, read independently of the probes."""
    for line in (root / "proc" / "meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name == key:
            return int(rest.split()[0])
    raise KeyError(key)
