"""What an authenticated session is for: the first control message after the verdicts.

Theory of operation
-------------------
Once both sides of a member-to-member handshake have sent ``Welcome``, the initiator
names the *service* the connection is for and may attach a first body::

    {"service": "gossip", "body": <bytes>}      (canonical msgpack map)

The responder dispatches on ``service``; a session with no service message (the
initiator sends END_OF_STREAM at once) was only a greeting.  Service names are
short lowercase words; the set is append-only like every wire value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import msgpack

from protocol.errors import LocalProtocolError, RemoteProtocolError

SERVICE_HELLO = "hello"
SERVICE_GOSSIP = "gossip"
SERVICE_AUDIT = "audit"
SERVICE_RAFT = "raft"
SERVICE_STAGE = "stage"
SERVICE_WEIGHTS = "weights"
SERVICE_CLOCK = "clock"
SERVICES = (
    SERVICE_HELLO,
    SERVICE_GOSSIP,
    SERVICE_AUDIT,
    SERVICE_RAFT,
    SERVICE_STAGE,
    SERVICE_WEIGHTS,
    SERVICE_CLOCK,
)
"""Append only."""

SESSION_OPEN_BYTES_MAX = 65000
_SERVICE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


@dataclass(frozen=True, kw_only=True)
class SessionOpen:
    service: str
    """Which service the initiator wants (one of :data:`SERVICES`)."""
    body: bytes
    """The service's first message, possibly empty."""


def encode_session_open(service: str, body: bytes = b"") -> bytes:
    if not _SERVICE_RE.match(service):
        raise LocalProtocolError(f"service name {service!r} is not a short lowercase word")
    packed: bytes = msgpack.packb({"body": body, "service": service}, use_bin_type=True)
    if len(packed) > SESSION_OPEN_BYTES_MAX:
        raise LocalProtocolError(f"session body of {len(body)} bytes is too large")
    return packed


def decode_session_open(data: bytes) -> SessionOpen:
    """Strictly decode a session-open message (RemoteProtocolError on anything else)."""
    if len(data) > SESSION_OPEN_BYTES_MAX:
        raise RemoteProtocolError(f"session open of {len(data)} bytes is too large")
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise RemoteProtocolError(f"session open is not msgpack: {exc}") from exc
    if not isinstance(obj, dict) or set(obj) != {"service", "body"}:
        raise RemoteProtocolError("session open must be a map {service, body}")
    service, body = obj["service"], obj["body"]
    if not isinstance(service, str) or not _SERVICE_RE.match(service):
        raise RemoteProtocolError(f"bad service name {str(service)[:40]!r}")
    if not isinstance(body, bytes):
        raise RemoteProtocolError("session body must be bytes")
    return SessionOpen(service=service, body=body)
