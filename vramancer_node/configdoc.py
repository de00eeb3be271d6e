"""Render the configuration reference of ``docs/configuration.md`` from the code.

The fields' metadata is the single source of truth; a test checks that the page
holds exactly what :func:`render_reference` produces, so the docs cannot drift.
Regenerate with ``python -m vramancer_node.configdoc --write``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from vramancer_node.config import PRESETS, build_config, get_value, iter_fields

BEGIN = "<!-- BEGIN GENERATED REFERENCE (python -m vramancer_node.configdoc --write) -->"
END = "<!-- END GENERATED REFERENCE -->"
DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def _shown(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return "[" + ", ".join(value) + "]"
    return str(value)


def _allowed(meta: Any) -> str:
    if meta.get("choices"):
        return ", ".join(meta["choices"])
    if meta.get("min") is not None:
        return f"[{meta['min']}, {meta['max']}]"
    return "HOST:PORT" if meta.get("kind") == "hostport" else ""


def render_reference() -> str:
    """The generated tables, one per section, with every preset's value."""
    configs = [build_config({"preset": p}) for p in PRESETS]
    lines: list[str] = []
    section = None
    for name, field, _hint in iter_fields():
        current = name.split(".")[0] if "." in name else ""
        if current != section:
            section = current
            lines += ["", f"### `[{current}]`" if current else "### Top level", ""]
            lines += [
                f"| setting | {' | '.join(PRESETS)} | unit | allowed | meaning |",
                "|---" * (len(PRESETS) + 4) + "|",
            ]
        values = " | ".join(_shown(get_value(c, name)) for c in configs)
        meta = field.metadata
        lines.append(
            f"| `{name}` | {values} | {meta.get('unit') or ''} | {_allowed(meta)} | {meta['doc']} |"
        )
    return "\n".join([BEGIN, *lines, "", END])


def splice(page: str) -> str:
    """``page`` with its generated block replaced by the current reference."""
    head, _, rest = page.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return head + render_reference() + tail


if __name__ == "__main__":
    text = DOC_PATH.read_text()
    if sys.argv[1:] == ["--write"]:
        DOC_PATH.write_text(splice(text))
    else:
        sys.stdout.write(render_reference() + "\n")
