"""The pure cores (protocol/, crypto/) must not do I/O, read clocks or use global random.

DESIGN.md section 2: time enters as ``now``, randomness as an injected
``random.Random``; trio, sockets, LMDB, torch, metrics and the shell stay out.
"""

from __future__ import annotations

import ast
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PURE_PACKAGES = ("protocol", "crypto")
FORBIDDEN = frozenset(
    {"trio", "socket", "time", "lmdb", "torch", "prometheus_client", "vramancer_node", "cli"}
)
# `random.Random` may be imported for type hints and injection; nothing else from it.
RANDOM_ALLOWED_NAMES = frozenset({"Random"})
DYNAMIC_IMPORTERS = frozenset({"__import__", "import_module"})


def _violations_in(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []

    def flag(node: ast.AST, what: str) -> None:
        found.append(f"{path.relative_to(REPO_ROOT)}:{getattr(node, 'lineno', '?')}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top in FORBIDDEN:
                    flag(node, f"import {alias.name}")
                elif top == "random":
                    flag(node, "import random (inject a random.Random instead)")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            top = node.module.split(".")[0]
            if top in FORBIDDEN:
                flag(node, f"from {node.module} import ...")
            elif top == "random":
                extra = {a.name for a in node.names} - RANDOM_ALLOWED_NAMES
                if extra:
                    flag(node, f"from random import {', '.join(sorted(extra))}")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in DYNAMIC_IMPORTERS and node.args:
                arg = node.args[0]
                literal = isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                if literal and str(arg.value).split(".")[0] in FORBIDDEN | {"random"}:  # type: ignore[attr-defined]
                    flag(node, f"dynamic import of {arg.value}")  # type: ignore[attr-defined]
    return found


def scan_pure_packages() -> list[str]:
    """Every forbidden import under protocol/ and crypto/, as ``file:line: what``."""
    violations: list[str] = []
    for package in PURE_PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            violations.extend(_violations_in(path))
    return violations


def test_pure_packages_have_no_forbidden_imports() -> None:
    assert scan_pure_packages() == []


def test_the_scan_sees_python_files_in_both_packages() -> None:
    for package in PURE_PACKAGES:
        assert list((REPO_ROOT / package).rglob("*.py")), f"{package}/ has no modules"


@pytest.mark.parametrize("package", PURE_PACKAGES)
@pytest.mark.parametrize(
    "source",
    [
        "import trio\n",
        "import socket\n",
        "from time import monotonic\n",
        "import random\n",
        "from random import randint\n",
        "import lmdb\n",
        "import torch.nn\n",
        "from prometheus_client import Counter\n",
        "from vramancer_node.daemon import Node\n",
        "import cli.common\n",
        "def f():\n    import trio\n",
        "import importlib\nimportlib.import_module('socket')\n",
    ],
)
def test_scan_fails_on_a_forbidden_import_in_a_real_module(package: str, source: str) -> None:
    probe = REPO_ROOT / package / f"_purity_probe_{uuid.uuid4().hex}.py"
    probe.write_text(source)
    try:
        violations = scan_pure_packages()
    finally:
        probe.unlink()
    assert len(violations) == 1
    assert violations[0].startswith(f"{package}/{probe.name}:")


def test_injected_random_is_allowed(tmp_path: Path) -> None:
    module = REPO_ROOT / "crypto" / f"_purity_probe_{uuid.uuid4().hex}.py"
    module.write_text("from random import Random\n\ndef f(rng: Random) -> float:\n    return 1.0\n")
    try:
        assert scan_pure_packages() == []
    finally:
        module.unlink()
