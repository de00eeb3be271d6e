"""The membership core compiled with mypyc, for simulations of large clusters.

Theory of operation
-------------------
``protocol/membership`` is plain, ``mypy --strict`` Python, so mypyc (shipped with
mypy) compiles the very same source into C extension modules.  The simulator then
drives identical code about twice as fast; a seeded run gives the same figures with
either core (``tests/protocol/test_membership_simulation.py`` checks it).

:func:`activate` builds the extensions once per version of the sources into
``.cache/mypyc/<digest>/`` at the repository root (about 15 s; a C compiler and the
Python headers are needed) and puts that directory first on ``sys.path``, so the
``protocol`` package is imported from there.  It must run before anything imports
``protocol``: a process holds one copy of a module.

``--core auto`` (the simulator's default) uses the compiled core when it can be
built and says on stderr why not otherwise; ``pure`` never builds; ``compiled``
fails when the build fails.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "mypyc"
COMPILED = (
    "protocol/membership",
    "protocol/errors.py",
    "protocol/wire.py",
    "membership_cluster.py",
)
"""What mypyc compiles: the membership core, the two modules it imports, and the
simulator's event loop (``simulations/membership_cluster.py``, a top-level module)."""
MOVED = {"membership_cluster.py": "simulations/membership_cluster.py"}
"""Where compiled files that do not live at the same path in the repository come from."""
COPIED = ("protocol/__init__.py", "protocol/py.typed", "pyproject.toml")
"""Copied as they are: the package marker and the mypy settings the build checks with."""
CORES = ("auto", "compiled", "pure")
SETUP = f"""\
from setuptools import setup
from mypyc.build import mypycify

setup(name="vramancer-membership-core", ext_modules=mypycify({list(COMPILED)!r}, multi_file=True))
"""
"""The build script: ``mypyc`` as its command line runs it, but with one C file per
module (``multi_file``), which compiles in 15 s instead of 19 s and runs as fast."""
BUILDS_KEPT = 3
"""Builds of other source versions kept in the cache (the newest); older ones go."""


class BuildError(RuntimeError):
    """The compiled core could not be built; the message says why."""


def _sources() -> dict[str, Path]:
    """Build-directory path -> source file, for everything the build needs."""
    files = {name: ROOT / name for name in COPIED}
    for name in COMPILED:
        path = ROOT / MOVED.get(name, name)
        if path.is_dir():
            files.update({f"{name}/{p.name}": p for p in sorted(path.glob("*.py"))})
        else:
            files[name] = path
    return files


def _digest() -> str:
    digest = hashlib.sha256()
    digest.update(f"{sys.version}\n{importlib.metadata.version('mypy')}\n".encode())
    for name, path in _sources().items():
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def build() -> Path:
    """The directory holding the compiled ``protocol`` package, built if missing."""
    target = CACHE / _digest()
    if (target / "protocol" / "membership").is_dir():  # complete: renamed into place
        _prune(keep=target)
        return target
    if shutil.which(os.environ.get("CC", "cc")) is None:
        raise BuildError("no C compiler (cc) on PATH: install gcc")
    print("building the compiled membership core with mypyc (once, ~15 s)", file=sys.stderr)
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="build-", dir=CACHE))
    try:
        for name, path in _sources().items():
            copy = work / name
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, copy)
        (work / "setup.py").write_text(SETUP)
        jobs = str(os.cpu_count() or 1)
        done = subprocess.run(
            [sys.executable, "setup.py", "build_ext", "--inplace", "--parallel", jobs],
            cwd=work,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
            raise BuildError(f"mypyc failed (exit {done.returncode}):\n{tail}")
        shutil.rmtree(work / "build", ignore_errors=True)
        (work / "setup.py").unlink()
        try:
            work.rename(target)
        except OSError:  # another run built it meanwhile
            shutil.rmtree(work, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    _prune(keep=target)
    return target


def _prune(keep: Path) -> None:
    """Remove all but the newest ``BUILDS_KEPT`` other builds (a process that still
    runs one keeps its loaded modules: they are mapped, not re-read)."""
    others = [p for p in CACHE.iterdir() if p.is_dir() and p != keep and len(p.name) == 16]
    others.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in others[BUILDS_KEPT:]:
        shutil.rmtree(old, ignore_errors=True)


def activate(core: str) -> str:
    """Make ``core`` the ``protocol`` package this process imports; the core in use."""
    if core not in CORES:
        raise ValueError(f"core must be one of {', '.join(CORES)}, got {core!r}")
    if "protocol" in sys.modules:
        raise RuntimeError("choose the core before anything imports protocol")
    if core == "pure":
        return "pure"
    try:
        path = build()
    except BuildError as exc:
        if core == "compiled":
            raise
        print(f"using the pure-Python core: {exc}", file=sys.stderr)
        return "pure"
    sys.path.insert(0, str(path))
    return "compiled"


if __name__ == "__main__":  # scripts/dev.sh setup: build it ahead of the first simulation
    try:
        print(f"compiled membership core: {build().relative_to(ROOT)}")
    except BuildError as exc:
        print(f"compiled membership core not built ({exc}); simulations run the pure one")
