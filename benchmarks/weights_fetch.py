"""Weight fetch throughput over loopback: a server process, a fetching process.

Run: ``.venv/bin/python benchmarks/weights_fetch.py [--mib 256]``; prints one JSON
object.  The server (a child process) serves one random file of ``--mib`` MiB over the
``weights`` service of a real PeerService on 127.0.0.1; this process fetches it with
:class:`vramancer_node.weights.Fetcher` (16 MiB ranges, one Noise session each), which
includes writing the ``.part`` file, fsync, the SHA-256 verification and the rename.
Baselines in the same run: SHA-256 alone over the file, and the server's first
manifest (a full hash pass).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import multiprocessing.connection
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trio

from benchmarks.loopback import bench_credentials, cpu_pair, pin
from protocol.session import SERVICE_WEIGHTS
from vramancer_node.peering import PeerService
from vramancer_node.weights import Fetcher, WeightsServer, WeightsStore
from vramancer_node.weights.manifest import sha256_file

MODEL = "bench-model"
FILE_NAME = "model.safetensors"


def _peers(name: str, serial: int) -> PeerService:
    creds, policy = bench_credentials(name, serial)
    return PeerService(creds, lambda: policy, lambda: None, listen="127.0.0.1:0", timeout_s=60)


async def _serve(conn: multiprocessing.connection.Connection, directory: str) -> None:
    peers = _peers("server", 2)
    store = WeightsStore(Path(directory) / "state", lambda: {MODEL: Path(directory) / MODEL})
    server = WeightsServer(store)
    peers.register(SERVICE_WEIGHTS, server.serve_session)
    started = time.perf_counter()
    await store.manifest(MODEL)
    manifest_s = time.perf_counter() - started
    async with trio.open_nursery() as nursery:
        (address,) = await nursery.start(peers.serve)
        conn.send((address, manifest_s))
        await trio.to_thread.run_sync(conn.recv)  # until the parent is done
        nursery.cancel_scope.cancel()


def server_main(
    conn: multiprocessing.connection.Connection, directory: str, cpu: int | None
) -> None:
    pin(cpu)
    trio.run(_serve, conn, directory)


async def _fetch(address: str, destination: Path) -> float:
    fetcher = Fetcher(_peers("client", 3))
    manifest = await fetcher.fetch_manifest(address, MODEL)
    entry = manifest.file(FILE_NAME)
    assert entry is not None
    started = time.perf_counter()
    await fetcher.fetch_file(MODEL, entry, [address], destination)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=256, help="file size in MiB")
    args = parser.parse_args()
    size = args.mib << 20
    cpus = cpu_pair()
    with tempfile.TemporaryDirectory(prefix="vrm-bench-") as root:
        model = Path(root) / MODEL
        model.mkdir()
        (model / FILE_NAME).write_bytes(os.urandom(size))
        started = time.perf_counter()
        sha256_file(model / FILE_NAME)
        hash_s = time.perf_counter() - started
        destination = Path(root) / "fetched"
        destination.mkdir()
        parent, child = multiprocessing.get_context("spawn").Pipe()
        process = multiprocessing.get_context("spawn").Process(
            target=server_main, args=(child, root, cpus[1] if cpus else None)
        )
        process.start()
        try:
            address, manifest_s = parent.recv()
            pin(cpus[0] if cpus else None)
            fetch_s = trio.run(_fetch, address, destination)
        finally:
            parent.send("done")
            process.join(30)
        assert (destination / FILE_NAME).stat().st_size == size
    mib = size / (1 << 20)
    print(
        json.dumps(
            {
                "benchmark": "weights_fetch",
                "file_mib": args.mib,
                "fetch_s": round(fetch_s, 3),
                "fetch_mib_per_s": round(mib / fetch_s, 1),
                "sha256_only_mib_per_s": round(mib / hash_s, 1),
                "server_first_manifest_s": round(manifest_s, 3),
                "cpus": list(cpus) if cpus else None,
            }
        )
    )


if __name__ == "__main__":
    main()
