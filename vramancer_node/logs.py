"""Logging: readable lines for people, JSON lines for machines.

Every record carries the node id and a *trace id*.  The trace id lives in a
:class:`contextvars.ContextVar`; trio copies the context into each task it spawns,
so a request handler that sets a trace id (from the caller's ``X-Trace-Id`` header,
or a fresh one) tags every line logged on its behalf, and the daemon's own tasks
carry the trace id of the run that started them.

Secrets never reach a log line: :class:`crypto.identity.NodeIdentity` has a safe
``repr`` and nothing logs tokens or keys.
"""

from __future__ import annotations

import contextvars
import json
import logging
import secrets
import sys
from datetime import datetime, timezone
from typing import TextIO

LOGGER_NAME = "vramancer"
TRACE_ID_BYTES = 8

trace_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("trace_id", default="-")
node_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("node_id", default="-")

# Attributes every LogRecord has; anything else was passed through ``extra=``.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "node_id",
    "trace_id",
}


def new_trace_id() -> str:
    """A fresh random trace id (16 hex digits)."""
    return secrets.token_hex(TRACE_ID_BYTES)


def get_logger(name: str) -> logging.Logger:
    """The logger of a daemon component, below the ``vramancer`` root logger."""
    return logging.getLogger(f"{LOGGER_NAME}.{name}")


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.node_id = node_id_var.get()
        record.trace_id = trace_id_var.get()
        return True


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, node_id, trace_id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "node_id": getattr(record, "node_id", "-"),
            "trace_id": getattr(record, "trace_id", "-"),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``HH:MM:SS level  component  message key=value`` with the short node id."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        component = record.name.removeprefix(f"{LOGGER_NAME}.")
        node = str(getattr(record, "node_id", "-"))[:8]
        line = f"{when} {record.levelname.lower():<7} [{node}] {component}: {record.getMessage()}"
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        if extras:
            line = f"{line}  {extras}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def configure_logging(level: str, fmt: str, stream: TextIO | None = None) -> None:
    """Send ``vramancer.*`` records to ``stream`` (stderr) as text or JSON lines.

    ``fmt`` is ``text``, ``json`` or ``auto`` (text when the stream is a TTY).
    """
    stream = sys.stderr if stream is None else stream
    if fmt == "auto":
        fmt = "text" if stream.isatty() else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_ContextFilter())
    root = logging.getLogger(LOGGER_NAME)
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
