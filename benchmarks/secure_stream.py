"""Secure-stream benchmark: raw AEAD, plain TCP, SecureStream and handshakes side by side.

Usage::

    python benchmarks/secure_stream.py            # about 20 s
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

The two-process harness (receiver child process, pinning, timing windows,
deterministic credentials) is :mod:`loopback`, next to this file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nacl
import nacl.bindings
import trio
from loopback import (
    HOST,
    MESSAGE_BYTES,
    SENDERS,
    CpuWindow,
    Receiver,
    Window,
    cpu_pair,
    handshake_workers,
    pattern_bytes,
    pin,
    read_responder_cpu_s,
    seed,
)

from protocol.frames import BULK_CHUNK_BYTES
from vramancer_node.net.securestream import RECEIVE_BYTES

BULK_PAYLOAD_BYTES_DEFAULT = 8 * 1024 * 1024
BYTES_DEFAULT = 1 << 30
SECONDS_DEFAULT = 3.0
REPEATS_DEFAULT = 3
CONCURRENCY_DEFAULT = 4
QUICK = {"bytes": 128 << 20, "seconds": 0.5, "repeats": 2}
"""``--quick`` overrides: under 15 s on a 2-core machine."""
TARGET_STREAM_VS_RAW_AEAD_MIN = 0.75
TARGET_HANDSHAKES_PER_S_MIN = 1000.0


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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
    key, nonce = seed("aead-key"), bytes(12)
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


# -- transfers ---------------------------------------------------------------------------


def bench_transfer(scenario: str, args: argparse.Namespace) -> dict[str, Any]:
    sent: list[Window] = []
    received: list[Window] = []
    with Receiver(scenario, args.receiver_cpu) as receiver:
        for _ in range(args.repeats):
            sent.append(trio.run(SENDERS[scenario], receiver.port, args.bytes, args.bulk_bytes))
            received.append(receiver.receive())
    rates = [window.per_s() for window in received]
    return {
        "bytes_per_s": round(statistics.median(rates)),
        "samples_bytes_per_s": [round(rate) for rate in rates],
        "sender_bytes_per_cpu_s": round(statistics.median(w.per_cpu_s() for w in sent)),
        "receiver_bytes_per_cpu_s": round(statistics.median(w.per_cpu_s() for w in received)),
        "sender_cpu_utilisation": [round(window.utilisation(), 2) for window in sent],
        "receiver_cpu_utilisation": [round(window.utilisation(), 2) for window in received],
    }


# -- handshakes --------------------------------------------------------------------------


def bench_handshakes(args: argparse.Namespace, concurrency: int) -> dict[str, Any]:
    with Receiver("handshakes", args.receiver_cpu) as receiver:
        trio.run(handshake_workers, receiver.port, concurrency, min(0.2, args.seconds))  # warm
        responder_cpu_start_s = read_responder_cpu_s(receiver)
        cpu_start_s, start_s = time.process_time(), time.perf_counter()
        counts = trio.run(handshake_workers, receiver.port, concurrency, args.seconds)
        elapsed_s = time.perf_counter() - start_s
        initiator_cpu_s = time.process_time() - cpu_start_s
        responder_cpu_s = read_responder_cpu_s(receiver) - responder_cpu_start_s
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
