"""vramancer_node.logs: JSON lines carry node id and trace id; text is readable."""

from __future__ import annotations

import io
import json
import logging

import pytest

from vramancer_node.logs import (
    LOGGER_NAME,
    configure_logging,
    get_logger,
    node_id_var,
    trace_id_var,
)


@pytest.fixture(autouse=True)
def _restore_root_logger():
    root = logging.getLogger(LOGGER_NAME)
    handlers, level, propagate = list(root.handlers), root.level, root.propagate
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    root.propagate = propagate


def test_json_lines_carry_node_and_trace_id() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    node_token, trace_token = node_id_var.set("nodeabc"), trace_id_var.set("trace42")
    try:
        get_logger("daemon").info("node running", extra={"port": 7733})
        get_logger("daemon").debug("hidden at info level")
    finally:
        node_id_var.reset(node_token)
        trace_id_var.reset(trace_token)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["msg"] == "node running"
    assert entry["node_id"] == "nodeabc"
    assert entry["trace_id"] == "trace42"
    assert entry["level"] == "info"
    assert entry["logger"] == "vramancer.daemon"
    assert entry["port"] == 7733


def test_text_lines_are_readable() -> None:
    stream = io.StringIO()
    configure_logging("debug", "text", stream)
    token = node_id_var.set("abcdefghijklmnop")
    try:
        get_logger("api").warning("slow request", extra={"path": "/v1/status"})
    finally:
        node_id_var.reset(token)
    line = stream.getvalue().strip()
    assert "warning" in line and "[abcdefgh]" in line and "api: slow request" in line
    assert line.endswith("path=/v1/status")


def test_auto_format_is_json_when_not_a_tty() -> None:
    stream = io.StringIO()
    configure_logging("info", "auto", stream)
    get_logger("x").info("hello")
    assert json.loads(stream.getvalue())["msg"] == "hello"
