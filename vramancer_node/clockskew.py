"""Clock skew between members: the ``clock`` session service and its probe.

Theory of operation
-------------------
Certificates, join tokens and audit records carry wall-clock times, so a member
whose clock is far off refuses valid certificates or stamps records out of order.
``vramancer-node doctor`` asks the running node ``GET /v1/cluster/clock``; the node
probes every live member once:

1. it opens an authenticated session of service :data:`SERVICE_CLOCK`;
2. it notes its wall time ``t0`` and sends one empty control message;
3. the peer answers at once with one control message, a msgpack map
   ``{"wall_time_s": float, "software_version": str, "protocol_version": int}``,
   then END_OF_STREAM; the prober notes ``t1``.

The peer read its clock somewhere in ``[t0, t1]`` of ours, so (NTP's formula for a
single exchange) ``offset_s = wall_time_s - (t0 + t1) / 2`` with an error of at most
``rtt_s / 2`` where ``rtt_s = t1 - t0``.  The handshake is outside ``[t0, t1]``.

Error handling
--------------
Each probe is bounded by :data:`PROBE_TIMEOUT_S`; a member that cannot be reached,
refuses the handshake (a protocol version mismatch says so here) or answers garbage
gets an ``error`` line instead of an offset, and the other probes go on.  A peer
running a version without this service closes the session: "no clock service".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack
import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crypto.noise.errors import NoiseError
from protocol.errors import RemoteProtocolError
from protocol.frames import ControlFrame, EndOfStream
from protocol.session import SERVICE_CLOCK
from vramancer_node import PROTOCOL_VERSION, __version__
from vramancer_node.logs import get_logger
from vramancer_node.net.handshake import AuthenticatedPeer, HandshakeFailed
from vramancer_node.net.securestream import SecureStream

if TYPE_CHECKING:
    from vramancer_node.peering import PeerService

log = get_logger("clockskew")

PROBE_TIMEOUT_S = 5.0
"""Longest one member's probe may take, handshake included."""
PROBES_CONCURRENT_MAX = 16
REPLY_BYTES_MAX = 256

WallClock = Callable[[], float]


class ClockProbeError(Exception):
    """One member's clock could not be read (``str()`` says why)."""


def _wall_clock() -> float:
    return time.time()


def clock_reply(wall_clock: WallClock = _wall_clock) -> bytes:
    """The responder's answer: its wall time and versions, msgpack-encoded."""
    reply: bytes = msgpack.packb(
        {
            "wall_time_s": wall_clock(),
            "software_version": __version__,
            "protocol_version": PROTOCOL_VERSION,
        }
    )
    return reply


def parse_clock_reply(data: bytes) -> dict[str, Any]:
    """Check a peer's answer; raise RemoteProtocolError when malformed."""
    if len(data) > REPLY_BYTES_MAX:
        raise RemoteProtocolError(f"clock reply of {len(data)} bytes (max {REPLY_BYTES_MAX})")
    try:
        reply = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise RemoteProtocolError(f"clock reply is not msgpack: {exc}") from exc
    if not isinstance(reply, dict):
        raise RemoteProtocolError("clock reply is not a map")
    wall = reply.get("wall_time_s")
    if isinstance(wall, bool) or not isinstance(wall, (int, float)) or not math.isfinite(wall):
        raise RemoteProtocolError("clock reply has no finite wall_time_s")
    version = reply.get("protocol_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise RemoteProtocolError("clock reply has no integer protocol_version")
    software = reply.get("software_version")
    if not isinstance(software, str) or len(software) > 64:
        raise RemoteProtocolError("clock reply has no software_version string")
    return {"wall_time_s": float(wall), "protocol_version": version, "software_version": software}


def make_clock_handler(
    wall_clock: WallClock = _wall_clock,
) -> Callable[[AuthenticatedPeer, SecureStream, bytes], Any]:
    """The responder side, for ``PeerService.register(SERVICE_CLOCK, ...)``."""

    async def serve_clock(peer: AuthenticatedPeer, secure: SecureStream, body: bytes) -> None:
        frame = await secure.receive_frame()
        if not isinstance(frame, ControlFrame):
            raise RemoteProtocolError(f"expected a clock request, got {type(frame).__name__}")
        await secure.send_control(clock_reply(wall_clock))
        await secure.send_eof()

    return serve_clock


async def probe_clock(
    peers: PeerService, address: str, wall_clock: WallClock = _wall_clock
) -> dict[str, Any]:
    """Offset of the member at ``address`` against our clock (raises ClockProbeError)."""
    try:
        with trio.fail_after(PROBE_TIMEOUT_S):
            async with peers.open_session(address, SERVICE_CLOCK) as (_peer, secure):
                t0 = wall_clock()
                await secure.send_control(b"")
                frame = await secure.receive_frame()
                t1 = wall_clock()
    except trio.TooSlowError:
        raise ClockProbeError(f"no answer within {PROBE_TIMEOUT_S:g} s") from None
    except HandshakeFailed as exc:
        raise ClockProbeError(f"handshake refused ({exc.reason}): {exc}") from exc
    except (OSError, trio.BrokenResourceError, NoiseError, RemoteProtocolError) as exc:
        raise ClockProbeError(f"{type(exc).__name__}: {exc}") from exc
    if isinstance(frame, EndOfStream):
        raise ClockProbeError("no clock service (an older vramancer-node?)")
    if not isinstance(frame, ControlFrame):
        raise ClockProbeError(f"unexpected {type(frame).__name__} instead of a clock reply")
    try:
        reply = parse_clock_reply(frame.payload)
    except RemoteProtocolError as exc:
        raise ClockProbeError(str(exc)) from exc
    rtt_s = t1 - t0
    return {
        "offset_s": reply["wall_time_s"] - (t0 + t1) / 2,
        "rtt_s": rtt_s,
        "error_bound_s": rtt_s / 2,
        "protocol_version": reply["protocol_version"],
        "software_version": reply["software_version"],
    }


async def probe_members(
    peers: PeerService, members: list[dict[str, Any]], wall_clock: WallClock = _wall_clock
) -> list[dict[str, Any]]:
    """Probe every live member but us (rows of ``peers_view``) concurrently."""
    limiter = trio.CapacityLimiter(PROBES_CONCURRENT_MAX)
    targets = [m for m in members if not m.get("local") and m.get("status") == "alive"]
    results: list[dict[str, Any]] = [{} for _ in targets]

    async def one(i: int, member: dict[str, Any]) -> None:
        row: dict[str, Any] = {
            "node_id": member["node_id"],
            "name": member.get("name"),
            "address": member["address"],
        }
        async with limiter:
            try:
                row.update(await probe_clock(peers, member["address"], wall_clock))
                row["error"] = None
            except ClockProbeError as exc:
                row["error"] = str(exc)
        results[i] = row

    async with trio.open_nursery() as nursery:
        for i, member in enumerate(targets):
            nursery.start_soon(one, i, member)
    return results


def clock_routes(get_node: Callable[[], Any]) -> list[Route]:
    """``GET /v1/cluster/clock`` (schema ``vramancer.clock.v1``) for the node's API."""

    async def clock(request: Request) -> Response:
        node = get_node()
        members = await probe_members(node.peers, node.peers_view())
        body = {
            "schema": "vramancer.clock.v1",
            "wall_time_s": _wall_clock(),
            "protocol_version": PROTOCOL_VERSION,
            "software_version": __version__,
            "members": members,
        }
        return JSONResponse(body)

    return [Route("/v1/cluster/clock", clock)]
