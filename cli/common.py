"""What both command-line programs share: paths, output, errors, the API client.

Conventions (consul / nomad / tailscale):

* a table on a TTY, plain aligned columns when piped, ``--json`` for programs
  (every JSON document carries a versioned ``"schema"``);
* exit 0 ok, 1 error or daemon unreachable (one clear line on stderr), 2 nothing
  matched a filter;
* only the CLI reads the environment, flags and files; the daemon gets a finished
  :class:`vramancer_node.config.NodeConfig`.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import platformdirs
import typer
from rich.console import Console
from rich.table import Table

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_NO_MATCH = 2

APP_NAME = "vramancer"
SYSTEM_STATE_DIR = Path("/var/lib/vramancer")
SYSTEM_CONFIG_FILE = Path("/etc/vramancer/node.toml")
CONFIG_FILE_NAME = "node.toml"


class CliError(Exception):
    """An error to report on stderr as one line, then exit 1."""


def is_system_service() -> bool:
    """True under systemd's StateDirectory= or as root: use the system paths."""
    return "STATE_DIRECTORY" in os.environ or os.geteuid() == 0


def default_state_dir() -> Path:
    if "STATE_DIRECTORY" in os.environ:  # systemd may list several, ':'-separated
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    if is_system_service():
        return SYSTEM_STATE_DIR
    return Path(platformdirs.user_state_dir(APP_NAME))


def default_config_file() -> Path:
    if "CONFIGURATION_DIRECTORY" in os.environ:
        return Path(os.environ["CONFIGURATION_DIRECTORY"].split(":")[0]) / CONFIG_FILE_NAME
    if is_system_service():
        return SYSTEM_CONFIG_FILE
    return Path(platformdirs.user_config_dir(APP_NAME)) / CONFIG_FILE_NAME


STATE_DIR_OPTION = typer.Option(
    None,
    "--state-dir",
    help="Node state directory [default: /var/lib/vramancer as a service, "
    "else the user's state dir].",
    show_default=False,
)
JSON_OPTION = typer.Option(False, "--json", help="Print JSON (versioned schema).")


def resolve_state_dir(state_dir: Path | None) -> Path:
    return state_dir if state_dir is not None else default_state_dir()


def command_state_dir(ctx: typer.Context, local: Path | None) -> Path:
    """A subcommand's ``--state-dir``, else the one given to ``vramancer`` itself (the
    root app keeps it in the context), else the default."""
    if local is not None:
        return local
    root = ctx.find_root().obj
    return root if isinstance(root, Path) else resolve_state_dir(None)


def fail(message: str) -> NoReturn:
    """Report ``message`` on stderr as one line and exit 1."""
    raise CliError(message)


def print_json(document: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False) + "\n")


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A rich table on a TTY; plain aligned columns when piped."""
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    if sys.stdout.isatty():
        table = Table(*columns, box=None, header_style="bold")
        for row in cells:
            table.add_row(*row)
        Console().print(table)
        return
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    for row in [list(columns), *cells]:
        sys.stdout.write(
            "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n"
        )


def print_fields(pairs: Sequence[tuple[str, Any]]) -> None:
    """Key/value pairs, one per line, keys aligned."""
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        shown = "-" if value is None else value
        if isinstance(shown, (list, tuple)):
            shown = ", ".join(map(str, shown)) or "-"
        sys.stdout.write(f"{key.ljust(width)}  {shown}\n")


def run_app(app: typer.Typer, prog_name: str, argv: Sequence[str] | None = None) -> NoReturn:
    """Run a typer app with our exit-code contract (usage errors exit 1, not 2)."""
    try:
        result = app(args=argv, prog_name=prog_name, standalone_mode=False)
    except CliError as exc:
        sys.stderr.write(f"{prog_name}: error: {exc}\n")
        sys.exit(EXIT_ERROR)
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write(f"{prog_name}: aborted\n")
        sys.exit(EXIT_ERROR)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        # Click's usage errors (typer vendors click, so match them by shape): show the
        # usage line and exit 1 -- exit 2 is reserved for "nothing matched a filter".
        show = getattr(exc, "show", None)
        if show is None or not hasattr(exc, "exit_code"):
            raise
        show()
        sys.exit(EXIT_ERROR)
    sys.exit(result if isinstance(result, int) else EXIT_OK)


def read_secret_file(path: Path | None, what: str) -> bytes | None:
    """Read a secret (first line, newline stripped) from ``path``; never echo it."""
    if path is None:
        return None
    try:
        data = path.read_bytes().splitlines()
    except OSError as exc:
        fail(f"cannot read {what} file {path}: {exc.strerror}")
    if not data or not data[0]:
        fail(f"{what} file {path} is empty")
    return data[0]


def parse_duration_s(text: str) -> int:
    """``90``, ``90s``, ``15m``, ``1h``, ``7d`` -> seconds (ValueError otherwise)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    factor = units.get(text[-1:])
    number = text[:-1] if factor else text
    factor = factor or 1
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 1h or 7d") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    return int(value * factor)
