"""Consensus commit latency and throughput: three real ConsensusServices in one
process, each with its own LMDB store (synced), talking over real PeerServices
(Noise over TCP on 127.0.0.1).

Theory of operation
-------------------
The three nodes run in one trio loop (so on one core: a lower bound for a cluster
whose nodes have a core each).  After the founder bootstraps and admits all three,
the autopilot makes them all voters; then

* ``store``: ``RaftStorage.save`` of one 100-byte entry and a hard state, on the
  store's writer thread: what one synced LMDB commit costs here;
* ``leader_sequential``: one proposal at a time on the leader, timed from ``submit``
  to applied on the leader (a quorum persisted it and acknowledged);
* ``follower_sequential``: the same from a follower (forwarded to the leader over a
  request session, then applied on the follower);
* ``leader_concurrent``: ``--concurrency`` submitters at once on the leader: commits
  per second when appends batch into one fsync and one round of messages.

Each proposal is a ``Revoke`` of a fresh serial (the smallest command).  Prints JSON;
asserts nothing about timing.

    python benchmarks/consensus.py [--proposals 200] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trio

from crypto import certs
from crypto.certs import ClusterCA
from crypto.identity import generate_identity
from crypto.noise import KeyPair
from protocol.control import AdmitMember, Revoke
from protocol.raft import ConfState, Entry, EntryKind, HardState, RaftConfig, Role, Snapshot
from vramancer_node.audit.writer import WriterThread
from vramancer_node.consensus import (
    ConsensusService,
    ConsensusSettings,
    RaftStorage,
    RaftTransport,
    VoterManager,
)
from vramancer_node.net.handshake import Credentials, TrustPolicy
from vramancer_node.peering import PeerService

NOW_S = 1_750_000_000.0


def seed(label: str) -> bytes:
    return hashlib.sha256(f"bench-consensus:{label}".encode()).digest()


class Node:
    def __init__(self, name: str, serial: int, ca: ClusterCA, root: Path, book: dict[str, str]):
        identity = generate_identity(seed(name))
        self.name = name
        self.node_id = identity.node_id
        cert = certs.issue(
            ca, node_pubkey=identity.public_key, node_name=name, roles=("admin", "member"),
            serial=serial, now=NOW_S, ttl_s=3600,
        ).encode()  # fmt: skip
        self.admission = AdmitMember(node_id=self.node_id, certificate=cert)
        creds = Credentials(
            identity=identity, noise_static=KeyPair.from_private(seed(f"noise:{name}")),
            certificate=cert, software_version="bench", protocol_version=1,
        )  # fmt: skip
        policy = TrustPolicy(ca_pubkey=ca.pubkey, revoked_serials=(), now=lambda: NOW_S)
        self.peers = PeerService(
            creds, lambda: policy, lambda: None, listen="127.0.0.1:0", timeout_s=10
        )
        self.book = book
        (root / name).mkdir()

        async def ignore(outcome: Any) -> None:
            return None

        self.service = ConsensusService(
            node_id=self.node_id,
            state_dir=root / name,
            settings=ConsensusSettings(
                tick_interval_s=0.1, raft=RaftConfig(), proposal_timeout_s=30
            ),
            transport=RaftTransport(self.peers, self.node_id, book.get),
            bootstrap=lambda: name == "a",
            on_outcome=ignore,
            ca_pubkey=ca.pubkey,
        )

    async def start(self, nursery: trio.Nursery, alive: Any) -> None:
        (address,) = await nursery.start(self.peers.serve)
        self.book[self.node_id] = address
        await nursery.start(self.service.run)
        voters = VoterManager(self.service, alive=alive, max_voters=3, stabilisation_s=0.0)
        nursery.start_soon(voters.run)


def summary(latencies_s: list[float]) -> dict[str, float]:
    ordered = sorted(latencies_s)
    return {
        "proposals": len(ordered),
        "median_ms": round(statistics.median(ordered) * 1000, 3),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
        "commits_per_s": round(len(ordered) / sum(ordered), 1),
    }


async def store_figures(root: Path, count: int) -> dict[str, float]:
    writer = WriterThread("bench-store")
    writer.start()
    (root / "store").mkdir()
    store = await writer.run_sync(RaftStorage.open, root / "store")
    snapshot = Snapshot(index=1, term=1, conf=ConfState.of(["a"]), data=b"")

    def save_one(index: int) -> None:
        entry = Entry(index=index, term=1, kind=EntryKind.NORMAL, data=b"e" * 100)
        store.save(entries=[entry], hard_state=HardState(term=1, vote="a", commit=index))

    await writer.run_sync(lambda: store.save(snapshot=snapshot))
    latencies = []
    for index in range(2, count + 2):
        start = time.perf_counter()
        await writer.run_sync(save_one, index)
        latencies.append(time.perf_counter() - start)
    await writer.run_sync(store.close)
    await writer.stop()
    return summary(latencies)


async def sequential(service: ConsensusService, count: int, first_serial: int) -> list[float]:
    latencies = []
    for serial in range(first_serial, first_serial + count):
        start = time.perf_counter()
        await service.submit(Revoke(serial=serial, reason=""))
        latencies.append(time.perf_counter() - start)
    return latencies


async def concurrent(
    service: ConsensusService, count: int, concurrency: int, first_serial: int
) -> dict[str, float]:
    serials = iter(range(first_serial, first_serial + count))
    latencies: list[float] = []

    async def worker() -> None:
        for serial in serials:
            start = time.perf_counter()
            await service.submit(Revoke(serial=serial, reason=""))
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    wall_s = time.perf_counter() - start
    figures = summary(latencies)
    figures["commits_per_s"] = round(count / wall_s, 1)
    figures["concurrency"] = concurrency
    return figures


async def main(args: argparse.Namespace) -> dict[str, Any]:
    ca = ClusterCA.generate(seed("ca"))
    with tempfile.TemporaryDirectory(prefix="vrmb-", dir="/tmp") as tmp:
        root = Path(tmp)
        report: dict[str, Any] = {"store": await store_figures(root, args.proposals)}
        book: dict[str, str] = {}
        nodes = [Node(name, serial, ca, root, book) for serial, name in enumerate("abc", 2)]
        async with trio.open_nursery() as nursery:
            for node in nodes:
                await node.start(nursery, lambda: {n.node_id for n in nodes})
            leader = nodes[0].service
            while leader.raft.role is not Role.LEADER:
                await trio.sleep(0.05)
            for node in nodes:
                await leader.submit(node.admission)
            while len(leader.raft.conf.voters) < 3 or leader.raft.role is not Role.LEADER:
                await trio.sleep(0.05)
            print("cluster of 3 voters ready", file=sys.stderr)
            serial = 1000
            report["leader_sequential"] = summary(await sequential(leader, args.proposals, serial))
            serial += args.proposals
            follower = nodes[1].service
            report["follower_sequential"] = summary(
                await sequential(follower, max(1, args.proposals // 4), serial)
            )
            serial += args.proposals
            report["leader_concurrent"] = await concurrent(
                leader, args.proposals * 2, args.concurrency, serial
            )
            nursery.cancel_scope.cancel()
    report["machine"] = {"cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0]}
    report["parameters"] = {"proposals": args.proposals, "concurrency": args.concurrency}
    return report


if __name__ == "__main__":
    logging.getLogger("vramancer").setLevel(logging.ERROR)  # shutdown cuts sessions short
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--proposals", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    print(json.dumps(trio.run(main, parser.parse_args()), indent=2))
