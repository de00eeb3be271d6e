"""Secure-stream benchmark: raw AEAD, plain TCP, SecureStream and handshakes side by side.

Usage::

    python benchmarks/secure_stream.py            # about 30 s
    python benchmarks/secure_stream.py --quick    # under 15 s, noisier
    python benchmarks/secure_stream.py --bytes 4294967296 --seconds 5 --repeats 5

Prints one JSON document on stdout (progress goes to stderr); ``benchmarks/README.md``
explains every figure.  Nothing here asserts on timing: the ``met`` booleans compare
the figures with the targets of the issue and the exit status is 0 either way.

Theory of operation
-------------------
1. *Raw AEAD*: ChaCha20-Poly1305 (IETF) through ``nacl.bindings`` on 64 KiB messages
   in this process, one core: the ceiling of any stream built on it.
2. *Plain TCP*, *SecureStream send_all* and *SecureStream send_bulk*: this process
   sends ``--bytes`` over 127.0.0.1 to a receiver in a child process (``spawn``).  The
   receiver times its deliveries: rate = bytes delivered after the first delivery /
   time from the first delivery to the last.  Connection setup, the handshake and
   TCP slow start are therefore outside the figure.  Each is measured ``--repeats``
   times on fresh connections; the median is reported with every sample.
3. *Handshakes*: full member-to-member handshakes (Noise XX, identity binding,
   challenge-response, certificate verdicts; ``noise_handshake`` +
   ``exchange_verdicts``) on fresh TCP connections to a responder in a child
   process, for ``--seconds``, one at a time and then ``--concurrency`` at a time.

Setup is deterministic: the cluster CA, identities, Noise static keys and
certificates derive from fixed seeds, and certificates are judged at a fixed time.
Only Noise ephemeral keys are random, as the protocol requires.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import multiprocessing
import multiprocessing.connection
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nacl
import nacl.bindings
import trio

from crypto import certs
from crypto.identity import generate_identity
from crypto.noise import KeyPair
from crypto.noise.errors import NoiseError
from protocol.errors import RemoteProtocolError
from protocol.frames import BULK_CHUNK_BYTES, BulkFrame, EndOfStream
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
BULK_PAYLOAD_BYTES_DEFAULT = 8 * 1024 * 1024
BYTES_DEFAULT = 1 << 30
SECONDS_DEFAULT = 3.0
REPEATS_DEFAULT = 3
CONCURRENCY_DEFAULT = 4
QUICK = {"bytes": 128 << 20, "seconds": 0.5, "repeats": 2}
"""``--quick`` overrides: under 15 s on a 2-core machine."""
TARGET_STREAM_VS_RAW_AEAD_MIN = 0.75
TARGET_HANDSHAKES_PER_S_MIN = 1000.0
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


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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


def _seed(label: str) -> bytes:
    return hashlib.sha256(b"vramancer-benchmark/" + label.encode()).digest()


@functools.cache
def bench_credentials(name: str, serial: int) -> tuple[Credentials, TrustPolicy]:
    """A member's credentials and trust policy, identical in every process and run."""
    ca = certs.ClusterCA.generate(_seed("cluster-ca"))
    identity = generate_identity(_seed(f"{name}/identity"))
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
        noise_static=KeyPair.from_private(_seed(f"{name}/noise-static")),
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


# -- 1. raw AEAD ----------------------------------------------------------------------------


def _rate(operation: Callable[[], object], seconds: float) -> tuple[float, float]:
    """Bytes per wall second and per CPU second of ``operation`` on one message."""
    operation()  # warm-up: first-call allocations stay out of the figure
    calls = 0
    window = CpuWindow()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        operation()
        calls += 1
    elapsed_s, cpu_s = window.stop()
    return calls * MESSAGE_BYTES / elapsed_s, calls * MESSAGE_BYTES / cpu_s


def bench_raw_aead(seconds: float) -> dict[str, Any]:
    key, nonce = _seed("aead-key"), bytes(12)
    message = pattern_bytes(MESSAGE_BYTES)
    ciphertext = nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(message, b"", nonce, key)
    encrypt = _rate(
        lambda: nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(message, b"", nonce, key),
        seconds / 2,
    )
    decrypt = _rate(
        lambda: nacl.bindings.crypto_aead_chacha20poly1305_ietf_decrypt(
            ciphertext, b"", nonce, key
        ),
        seconds / 2,
    )
    return {
        "message_bytes": MESSAGE_BYTES,
        "encrypt_bytes_per_s": round(encrypt[0]),
        "decrypt_bytes_per_s": round(decrypt[0]),
        "min_bytes_per_s": round(min(encrypt[0], decrypt[0])),
        "min_bytes_per_cpu_s": round(min(encrypt[1], decrypt[1])),
    }


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
    secure, peer, h = await noise_handshake(stream, creds, initiator=False)
    await exchange_verdicts(secure, peer, h, creds, policy)
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
            window = await RECEIVERS[scenario](stream)
            conn.send(dataclasses.asdict(window))  # plain data: __main__ differs per process


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
    secure, peer, h = await noise_handshake(stream, creds, initiator=True)
    await exchange_verdicts(secure, peer, h, creds, policy)
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


def bench_transfer(scenario: str, args: argparse.Namespace) -> dict[str, Any]:
    sent: list[Window] = []
    received: list[Window] = []
    with Receiver(scenario, args.receiver_cpu) as receiver:
        for _ in range(args.repeats):
            sent.append(trio.run(SENDERS[scenario], receiver.port, args.bytes, args.bulk_bytes))
            received.append(Window(**receiver.receive()))
    rates = [window.per_s() for window in received]
    return {
        "bytes_per_s": round(statistics.median(rates)),
        "samples_bytes_per_s": [round(rate) for rate in rates],
        "sender_bytes_per_cpu_s": round(statistics.median(w.per_cpu_s() for w in sent)),
        "receiver_bytes_per_cpu_s": round(statistics.median(w.per_cpu_s() for w in received)),
        "sender_cpu_utilisation": [round(window.utilisation(), 2) for window in sent],
        "receiver_cpu_utilisation": [round(window.utilisation(), 2) for window in received],
    }


# -- handshakes -----------------------------------------------------------------------------


async def _handshake_workers(port: int, concurrency: int, seconds: float) -> dict[str, int]:
    creds, policy = bench_credentials("sender", serial=1)
    counts = {"ok": 0, "failed": 0}
    deadline = trio.current_time() + seconds

    async def worker() -> None:
        while trio.current_time() < deadline:
            try:
                async with await trio.open_tcp_stream(HOST, port) as stream:
                    secure, peer, h = await noise_handshake(stream, creds, initiator=True)
                    await exchange_verdicts(secure, peer, h, creds, policy)
                    await secure.aclose()
                counts["ok"] += 1
            except CONNECTION_ERRORS:
                counts["failed"] += 1

    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    return counts


def _responder_cpu_s(receiver: Receiver) -> float:
    receiver.conn.send("cpu")
    cpu_s: float = receiver.receive()
    return cpu_s


def bench_handshakes(args: argparse.Namespace, concurrency: int) -> dict[str, Any]:
    with Receiver("handshakes", args.receiver_cpu) as receiver:
        trio.run(_handshake_workers, receiver.port, concurrency, min(0.2, args.seconds))  # warm
        responder_cpu_start_s = _responder_cpu_s(receiver)
        cpu_start_s, start_s = time.process_time(), time.perf_counter()
        counts = trio.run(_handshake_workers, receiver.port, concurrency, args.seconds)
        elapsed_s = time.perf_counter() - start_s
        initiator_cpu_s = time.process_time() - cpu_start_s
        responder_cpu_s = _responder_cpu_s(receiver) - responder_cpu_start_s
    done = max(counts["ok"], 1)
    return {
        "concurrency": concurrency,
        "handshakes_per_s": round(counts["ok"] / elapsed_s, 1),
        "handshakes": counts["ok"],
        "failures": counts["failed"],
        "elapsed_s": round(elapsed_s, 3),
        "initiator_cpu_ms_per_handshake": round(initiator_cpu_s * 1000 / done, 3),
        "responder_cpu_ms_per_handshake": round(responder_cpu_s * 1000 / done, 3),
        "handshakes_per_cpu_s_of_busier_side": round(
            done / max(initiator_cpu_s, responder_cpu_s, 1e-9), 1
        ),
    }


# -- report -------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "pynacl": nacl.__version__,
        "trio": trio.__version__,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def summarise(
    raw: dict[str, Any], transfers: dict[str, Any], handshakes: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, bool]]:
    """The ratios and target checks.  ``*_per_cpu_s`` ratios use the busier side's
    bytes per CPU second, which a busy machine disturbs far less than wall time."""
    modes = ("send_all", "send_bulk")
    tcp = transfers["plain_tcp"]["bytes_per_s"]
    wall = {mode: transfers[f"stream_{mode}"]["bytes_per_s"] for mode in modes}
    per_cpu = {
        mode: min(
            transfers[f"stream_{mode}"]["sender_bytes_per_cpu_s"],
            transfers[f"stream_{mode}"]["receiver_bytes_per_cpu_s"],
        )
        for mode in modes
    }
    ratios = {
        "stream_vs_raw_aead": {
            mode: round(wall[mode] / raw["min_bytes_per_s"], 3) for mode in modes
        },
        "stream_vs_raw_aead_per_cpu_s": {
            mode: round(per_cpu[mode] / raw["min_bytes_per_cpu_s"], 3) for mode in modes
        },
        "stream_vs_plain_tcp": {mode: round(wall[mode] / tcp, 3) for mode in modes},
    }
    met = {
        f"stream_vs_raw_aead_{mode}": ratios["stream_vs_raw_aead"][mode]
        >= TARGET_STREAM_VS_RAW_AEAD_MIN
        for mode in modes
    }
    for name, result in handshakes.items():
        met[f"handshakes_per_s_{name}"] = result["handshakes_per_s"] >= TARGET_HANDSHAKES_PER_S_MIN
    return ratios, met


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bytes", type=int, default=None, help="bytes per transfer sample")
    parser.add_argument("--seconds", type=float, default=None, help="per AEAD/handshake run")
    parser.add_argument("--repeats", type=int, default=None, help="samples per transfer")
    parser.add_argument("--bulk-bytes", type=int, default=BULK_PAYLOAD_BYTES_DEFAULT)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY_DEFAULT)
    parser.add_argument("--quick", action="store_true", help="a fast, noisier run (< 15 s)")
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", help="let the scheduler place both sides"
    )
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else {}
    args.bytes = args.bytes or defaults.get("bytes", BYTES_DEFAULT)
    args.seconds = args.seconds or defaults.get("seconds", SECONDS_DEFAULT)
    args.repeats = args.repeats or defaults.get("repeats", REPEATS_DEFAULT)
    if args.bytes < MESSAGE_BYTES or args.bytes % MESSAGE_BYTES:
        parser.error(f"--bytes must be a positive multiple of {MESSAGE_BYTES}")
    if not 0 < args.bulk_bytes <= args.bytes:
        parser.error("--bulk-bytes must be in 1..--bytes")
    if args.seconds <= 0 or args.repeats < 1 or args.concurrency < 2:
        parser.error("--seconds > 0, --repeats >= 1 and --concurrency >= 2 are required")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wall_start_s = time.perf_counter()
    pair = cpu_pair(args.pin)
    pin(pair[0] if pair else None)  # the sender's CPU; children re-pin to the other one
    args.receiver_cpu = pair[1] if pair else None
    progress("raw AEAD...")
    raw = bench_raw_aead(args.seconds)
    transfers = {}
    for scenario in SENDERS:
        progress(f"{scenario}...")
        transfers[scenario] = bench_transfer(scenario, args)
    handshakes = {}
    for name, concurrency in (("sequential", 1), ("concurrent", args.concurrency)):
        progress(f"handshakes, {name}...")
        handshakes[name] = bench_handshakes(args, concurrency)
    ratios, met = summarise(raw, transfers, handshakes)
    report = {
        "benchmark": "secure_stream",
        "parameters": {
            **{name: value for name, value in vars(args).items() if name != "receiver_cpu"},
            "message_bytes": MESSAGE_BYTES,
            "bulk_chunk_bytes": BULK_CHUNK_BYTES,
            "receive_bytes": RECEIVE_BYTES,
            "host": HOST,
            "cpus_sender_receiver": list(pair) if pair else None,
        },
        "machine": machine_info(),
        "raw_aead": raw,
        **transfers,
        "handshakes": handshakes,
        "ratios": ratios,
        "targets": {
            "stream_vs_raw_aead_min": TARGET_STREAM_VS_RAW_AEAD_MIN,
            "handshakes_per_s_min": TARGET_HANDSHAKES_PER_S_MIN,
        },
        "met": met,
        "wall_s": round(time.perf_counter() - wall_start_s, 1),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
