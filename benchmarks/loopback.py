"""The two-process loopback harness of ``secure_stream.py``: peers, windows, setup.

Theory of operation
-------------------
The benchmark process is the sender (or handshake initiator); :class:`Receiver`
starts the receiver (or responder) in a child process with ``spawn``, pinned to
another CPU than the sender (:func:`cpu_pair`).  The child reports its port, then
one :class:`Window` per transfer, or its CPU time when asked during handshakes.

A transfer is timed where it arrives (:class:`DeliveryClock`): from the first
delivery to the last, counting the bytes after the first, so connection setup,
the handshake and TCP slow start stay out of the figure.  Each side also reads its
own CPU time over its window.

Setup is deterministic: the cluster CA, identities, Noise static keys and
certificates derive from fixed seeds (:func:`seed`) and certificates are judged at
``BENCH_NOW_S``; only Noise ephemeral keys are random, as the protocol requires.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import multiprocessing
import multiprocessing.connection
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trio

from crypto import certs
from crypto.identity import generate_identity
from crypto.noise import KeyPair
from crypto.noise.errors import NoiseError
from protocol.errors import RemoteProtocolError
from protocol.frames import BulkFrame, EndOfStream
from vramancer_node import PROTOCOL_VERSION, __version__
from vramancer_node.net.handshake import (
    Credentials,
    HandshakeFailed,
    TrustPolicy,
    exchange_verdicts,
    noise_handshake,
)
from vramancer_node.net.securestream import RECEIVE_BYTES, SecureStream

MESSAGE_BYTES = 64 * 1024
"""Size of one raw AEAD message and of one ``send_all`` call."""
BENCH_NOW_S = 1_800_000_000
"""Fixed Unix time for issuing and judging certificates: no clock in the setup."""
CERT_TTL_S = 3600
BULK_KIND = 1
HOST = "127.0.0.1"
CHILD_TIMEOUT_S = 60.0
"""How long to wait for a receiver process to start or to report, before giving up."""
CONNECTION_ERRORS = (
    HandshakeFailed,
    RemoteProtocolError,
    NoiseError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    OSError,
)


def cpu_pair(enabled: bool = True) -> tuple[int, int] | None:
    """Two CPUs for the two sides, or None (pinning off, or fewer than two CPUs).

    Pinning keeps the scheduler from waking both processes on one core, which halves
    a loopback transfer at random (seen as CPU utilisations near 0.5).
    """
    if not enabled or not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else None


def pin(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


# -- deterministic setup ------------------------------------------------------------------


def seed(label: str) -> bytes:
    return hashlib.sha256(b"vramancer-benchmark/" + label.encode()).digest()


@functools.cache
def bench_credentials(name: str, serial: int) -> tuple[Credentials, TrustPolicy]:
    """A member's credentials and trust policy, identical in every process and run."""
    ca = certs.ClusterCA.generate(seed("cluster-ca"))
    identity = generate_identity(seed(f"{name}/identity"))
    signed = certs.issue(
        ca,
        node_pubkey=identity.public_key,
        node_name=name,
        roles=("member",),
        serial=serial,
        now=BENCH_NOW_S,
        ttl_s=CERT_TTL_S,
    )
    creds = Credentials(
        identity=identity,
        noise_static=KeyPair.from_private(seed(f"{name}/noise-static")),
        certificate=signed.encode(),
        software_version=__version__,
        protocol_version=PROTOCOL_VERSION,
    )
    policy = TrustPolicy(ca_pubkey=ca.pubkey, revoked_serials=frozenset(), now=_judging_time)
    return creds, policy


def _judging_time() -> float:
    return BENCH_NOW_S + 60.0


def pattern_bytes(size: int) -> bytes:
    """Deterministic, incompressible-looking payload of ``size`` bytes."""
    block = hashlib.shake_256(b"vramancer-benchmark/payload").digest(MESSAGE_BYTES)
    return (block * (size // len(block) + 1))[:size]


class CpuWindow:
    """Wall seconds and this process's CPU seconds since construction."""

    def __init__(self) -> None:
        self.start_s, self.start_cpu_s = time.perf_counter(), time.process_time()

    def stop(self) -> tuple[float, float]:
        return time.perf_counter() - self.start_s, time.process_time() - self.start_cpu_s


# -- receivers (child process) ------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Window:
    """What one side did in its measured window."""

    bytes: int
    elapsed_s: float
    cpu_s: float
    """This process's CPU time (user + system) in the window."""

    def per_s(self) -> float:
        return self.bytes / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def per_cpu_s(self) -> float:
        return self.bytes / self.cpu_s if self.cpu_s > 0 else 0.0

    def utilisation(self) -> float:
        return self.cpu_s / self.elapsed_s if self.elapsed_s > 0 else 0.0


class DeliveryClock:
    """Times deliveries: the rate counts what arrived after the first delivery.

    It also reads this process's CPU time over the same window: a receiver near 1.0
    CPU seconds per second is the bottleneck.
    """

    def __init__(self) -> None:
        self.first_s: float | None = None
        self.last_s = 0.0
        self.first_cpu_s = self.last_cpu_s = 0.0
        self.bytes_after_first = 0

    def delivered(self, size: int) -> None:
        now, cpu_s = time.perf_counter(), time.process_time()
        if self.first_s is None:
            self.first_s, self.first_cpu_s = now, cpu_s
        else:
            self.bytes_after_first += size
        self.last_s, self.last_cpu_s = now, cpu_s

    def result(self) -> Window:
        return Window(
            bytes=self.bytes_after_first,
            elapsed_s=self.last_s - (self.first_s or self.last_s),
            cpu_s=self.last_cpu_s - self.first_cpu_s,
        )


async def _receive_tcp(stream: trio.SocketStream) -> Window:
    clock = DeliveryClock()
    while data := await stream.receive_some(RECEIVE_BYTES):
        clock.delivered(len(data))
    return clock.result()


async def _secure_responder(stream: trio.SocketStream) -> SecureStream:
    creds, policy = bench_credentials("receiver", serial=2)
    secure, peer, h = await noise_handshake(stream, creds, initiator=False, await_auth=False)
    await exchange_verdicts(secure, peer, h, creds, policy, auth_pending=True)
    return secure


async def _receive_stream(stream: trio.SocketStream) -> Window:
    secure = await _secure_responder(stream)
    clock = DeliveryClock()
    while data := await secure.receive_some():
        clock.delivered(len(data))
    await secure.aclose()
    return clock.result()


async def _receive_bulk(stream: trio.SocketStream) -> Window:
    secure = await _secure_responder(stream)
    clock = DeliveryClock()
    while isinstance(frame := await secure.receive_frame(), BulkFrame):
        clock.delivered(len(frame.body))
    if not isinstance(frame, EndOfStream):
        raise RuntimeError(f"unexpected frame {frame!r:.60}")
    await secure.aclose()
    return clock.result()


RECEIVERS: dict[str, Callable[[trio.SocketStream], Awaitable[Window]]] = {
    "plain_tcp": _receive_tcp,
    "stream_send_all": _receive_stream,
    "stream_send_bulk": _receive_bulk,
}


async def _serve_transfers(conn: multiprocessing.connection.Connection, scenario: str) -> None:
    listeners = await trio.open_tcp_listeners(0, host=HOST)
    conn.send(listeners[0].socket.getsockname()[1])
    while True:
        stream = await listeners[0].accept()
        async with stream:
            conn.send(await RECEIVERS[scenario](stream))


async def _serve_handshakes(conn: multiprocessing.connection.Connection) -> None:
    async def handle(stream: trio.SocketStream) -> None:
        try:
            secure = await _secure_responder(stream)
            await secure.aclose()
        except CONNECTION_ERRORS:
            pass  # the initiator counts failures

    listeners = await trio.open_tcp_listeners(0, host=HOST, backlog=1024)
    conn.send(listeners[0].socket.getsockname()[1])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handle, listeners)
        while True:  # "cpu" asks for this process's CPU seconds so far
            await trio.to_thread.run_sync(conn.recv)
            conn.send(time.process_time())


def receiver_main(
    conn: multiprocessing.connection.Connection, scenario: str, cpu: int | None
) -> None:
    """Child process entry point; runs until the parent terminates it."""
    pin(cpu)
    if scenario == "handshakes":
        trio.run(_serve_handshakes, conn)
    else:
        trio.run(_serve_transfers, conn, scenario)


class Receiver:
    """A receiver child process, started with ``spawn`` (a clean interpreter)."""

    def __init__(self, scenario: str, cpu: int | None) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child_conn = context.Pipe()
        self.process = context.Process(target=receiver_main, args=(child_conn, scenario, cpu))

    def __enter__(self) -> Receiver:
        self.process.start()
        self.port: int = self.receive()
        return self

    def receive(self) -> Any:
        """The receiver's next report; raises rather than wait on a dead process."""
        if not self.conn.poll(CHILD_TIMEOUT_S):
            raise RuntimeError(f"the receiver sent nothing for {CHILD_TIMEOUT_S} s")
        return self.conn.recv()

    def __exit__(self, *exc_info: object) -> None:
        self.process.terminate()
        self.process.join()


# -- senders (this process) ---------------------------------------------------------------


async def _send_tcp(port: int, total_bytes: int, _bulk_bytes: int) -> Window:
    block = pattern_bytes(MESSAGE_BYTES)
    async with await trio.open_tcp_stream(HOST, port) as stream:
        window = CpuWindow()
        for _ in range(total_bytes // MESSAGE_BYTES):
            await stream.send_all(block)
        elapsed_s, cpu_s = window.stop()
        await stream.send_eof()
        await stream.receive_some(1)  # the receiver closes once it has counted
    return Window(bytes=total_bytes, elapsed_s=elapsed_s, cpu_s=cpu_s)


async def _secure_initiator(stream: trio.SocketStream) -> SecureStream:
    creds, policy = bench_credentials("sender", serial=1)
    secure, peer, h = await noise_handshake(stream, creds, initiator=True, await_auth=False)
    await exchange_verdicts(secure, peer, h, creds, policy, auth_pending=True)
    return secure


async def _send_stream(port: int, total_bytes: int, _bulk_bytes: int) -> Window:
    block = pattern_bytes(MESSAGE_BYTES)
    async with await trio.open_tcp_stream(HOST, port) as stream:
        secure = await _secure_initiator(stream)
        window = CpuWindow()
        for _ in range(total_bytes // MESSAGE_BYTES):
            await secure.send_all(block)
        elapsed_s, cpu_s = window.stop()
        await secure.send_eof()
        await secure.receive_some()  # END_OF_STREAM once the receiver is done
        await secure.aclose()
    return Window(bytes=total_bytes, elapsed_s=elapsed_s, cpu_s=cpu_s)


async def _send_bulk(port: int, total_bytes: int, bulk_bytes: int) -> Window:
    body = pattern_bytes(bulk_bytes)
    async with await trio.open_tcp_stream(HOST, port) as stream:
        secure = await _secure_initiator(stream)
        window = CpuWindow()
        payloads = max(1, total_bytes // bulk_bytes)
        for _ in range(payloads):
            await secure.send_bulk(BULK_KIND, b"", body)
        elapsed_s, cpu_s = window.stop()
        await secure.send_eof()
        await secure.receive_frame()
        await secure.aclose()
    return Window(bytes=payloads * bulk_bytes, elapsed_s=elapsed_s, cpu_s=cpu_s)


SENDERS: dict[str, Callable[[int, int, int], Awaitable[Window]]] = {
    "plain_tcp": _send_tcp,
    "stream_send_all": _send_stream,
    "stream_send_bulk": _send_bulk,
}


# -- handshakes --------------------------------------------------------------------------


async def handshake_workers(port: int, concurrency: int, seconds: float) -> dict[str, int]:
    creds, policy = bench_credentials("sender", serial=1)
    counts = {"ok": 0, "failed": 0}
    deadline = trio.current_time() + seconds

    async def worker() -> None:
        while trio.current_time() < deadline:
            try:
                async with await trio.open_tcp_stream(HOST, port) as stream:
                    secure, peer, h = await noise_handshake(
                        stream, creds, initiator=True, await_auth=False
                    )
                    await exchange_verdicts(secure, peer, h, creds, policy, auth_pending=True)
                    await secure.aclose()
                counts["ok"] += 1
            except CONNECTION_ERRORS:
                counts["failed"] += 1

    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    return counts


def read_responder_cpu_s(receiver: Receiver) -> float:
    receiver.conn.send("cpu")
    cpu_s: float = receiver.receive()
    return cpu_s
