"""crypto.audit and crypto.merkle stay pure: no clock, no network, no storage, no shell.

Scans the source with ``ast`` rather than importing it, so that a forbidden import in a
module nothing imports yet is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("crypto/merkle", "crypto/audit")
FORBIDDEN_MODULES = {
    "time",
    "socket",
    "trio",
    "lmdb",
    "torch",
    "prometheus_client",
    "vramancer_node",
    "cli",
    "os",
    "pathlib",
    "io",
}
FORBIDDEN_CALLS = {"open", "print", "input"}
SOURCES = sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def _imported_modules(tree: ast.Module) -> list[tuple[str, int, bool]]:
    """Return (top-level module, line, at module level) for every import."""
    module_level = {id(node) for node in tree.body}
    found: list[tuple[str, int, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        found.extend((name.split(".")[0], node.lineno, id(node) in module_level) for name in names)
    return found


def test_sources_found() -> None:
    assert len(SOURCES) >= 10


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_module_is_pure(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for module, line, at_module_level in _imported_modules(tree):
        assert module not in FORBIDDEN_MODULES, f"{path}:{line} imports {module}"
        assert not (module == "random" and at_module_level), f"{path}:{line} imports random"
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in FORBIDDEN_CALLS, f"{path}:{node.lineno} calls {node.func.id}"
