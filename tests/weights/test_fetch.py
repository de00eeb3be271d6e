"""Fetching checkpoint files between real PeerServices on 127.0.0.1: whole files,
resume after a cut connection, corrupt bytes refused and fetched elsewhere, path
traversal refused while the service keeps serving."""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import msgpack
import pytest
import trio

from protocol.frames import ControlFrame
from protocol.session import SERVICE_WEIGHTS
from protocol.weights import (
    ERROR_BAD_REQUEST,
    ERROR_UNKNOWN_FILE,
    ERROR_UNKNOWN_MODEL,
    FileEntry,
    decode_error,
)
from tests.net.clusterkit import Cluster
from vramancer_node.config import parse_hostport
from vramancer_node.peering import PeerService
from vramancer_node.weights.errors import FetchFailedError, PeerRefusedError
from vramancer_node.weights.fetch import Fetcher, FetchProgress, part_path
from vramancer_node.weights.server import WeightsServer
from vramancer_node.weights.store import WeightsStore

GUARD_S = 30.0
CLUSTER = Cluster.create("weights")
MODEL = "tiny-model"
READ_BYTES = 700_000
"""Ranges smaller than the files, so one file takes several sessions."""


def write_model(directory: Path, seed: int = 1) -> dict[str, bytes]:
    rng = random.Random(seed)
    files = {
        "config.json": b'{"model_type": "llama"}',
        "model.safetensors": rng.randbytes(2_500_000),
        "tokenizer.json": rng.randbytes(300_000),
        "empty.txt": b"",
    }
    directory.mkdir(parents=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    (directory / ".hidden").write_bytes(b"never served")
    return files


class Node:
    """A PeerService with a weights server over its own state directory."""

    def __init__(self, label: str, serial: int, state: Path, models: dict[str, Path]) -> None:
        policy = CLUSTER.policy()
        self.peers = PeerService(
            CLUSTER.member(label, serial=serial),
            lambda: policy,
            lambda: None,
            listen="127.0.0.1:0",
            timeout_s=GUARD_S,
        )
        self.store = WeightsStore(state, lambda: models)
        self.server = WeightsServer(self.store)
        self.peers.register(SERVICE_WEIGHTS, self.server.serve_session)


@asynccontextmanager
async def serving(*nodes: Node) -> AsyncIterator[list[str]]:
    async with trio.open_nursery() as nursery:
        addresses = [(await nursery.start(node.peers.serve))[0] for node in nodes]
        yield addresses
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def cutting_proxy(target: str, cut_after_bytes: int) -> AsyncIterator[str]:
    """A TCP proxy to ``target`` that kills its first connection once it has carried
    ``cut_after_bytes`` bytes towards the client; later connections pass untouched."""
    budget = [cut_after_bytes]

    async def pump(
        src: trio.SocketStream, dst: trio.SocketStream, counted: bool, scope: trio.CancelScope
    ) -> None:
        try:
            while data := await src.receive_some(65536):
                if counted and budget[0] >= 0:
                    if len(data) > budget[0]:
                        budget[0] = -1
                        return  # the cut: close both sides
                    budget[0] -= len(data)
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # one side went away: close both
        finally:
            scope.cancel()

    async def handle(client: trio.SocketStream) -> None:
        host, port = parse_hostport(target)
        upstream = await trio.open_tcp_stream(host, port)
        cut = budget[0] >= 0
        async with client, upstream, trio.open_nursery() as nursery:
            nursery.start_soon(pump, client, upstream, False, nursery.cancel_scope)
            nursery.start_soon(pump, upstream, client, cut, nursery.cancel_scope)

    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        nursery.start_soon(trio.serve_listeners, handle, listeners)
        yield f"127.0.0.1:{port}"
        nursery.cancel_scope.cancel()


def client(state: Path) -> tuple[PeerService, Path]:
    policy = CLUSTER.policy()
    peers = PeerService(
        CLUSTER.member("alice", serial=1),
        lambda: policy,
        lambda: None,
        listen="127.0.0.1:0",
        timeout_s=GUARD_S,
    )
    destination = state / "fetched"
    destination.mkdir()
    return peers, destination


async def test_fetch_every_file_verified(tmp_path: Path) -> None:
    files = write_model(tmp_path / "bob-models" / MODEL)
    bob = Node("bob", 2, tmp_path / "bob", {MODEL: tmp_path / "bob-models" / MODEL})
    peers, destination = client(tmp_path)
    events: list[FetchProgress] = []
    fetcher = Fetcher(peers, events.append, read_bytes_max=READ_BYTES)
    with trio.fail_after(GUARD_S):
        async with serving(bob) as [address]:
            manifest = await fetcher.fetch_manifest(address, MODEL)
            assert [entry.name for entry in manifest.files] == sorted(files)  # no .hidden
            for entry in manifest.files:
                assert entry.sha256 == hashlib.sha256(files[entry.name]).digest()
                await fetcher.fetch_file(MODEL, entry, [address], destination)
    for name, data in files.items():
        assert (destination / name).read_bytes() == data
    assert sorted(os.listdir(destination)) == sorted(files)  # no .part left behind
    weights = [e for e in events if e.file_name == "model.safetensors"]
    assert [e.bytes_done for e in weights] == sorted(e.bytes_done for e in weights)
    assert weights[-1].bytes_done == weights[-1].bytes_total == len(files["model.safetensors"])
    assert bob.server.stats["bytes_served"] == sum(map(len, files.values()))
    assert bob.server.stats["read"] >= len(files["model.safetensors"]) // READ_BYTES


async def test_resume_after_a_cut_connection(tmp_path: Path) -> None:
    files = write_model(tmp_path / "bob-models" / MODEL)
    bob = Node("bob", 2, tmp_path / "bob", {MODEL: tmp_path / "bob-models" / MODEL})
    peers, destination = client(tmp_path)
    fetcher = Fetcher(peers, read_bytes_max=READ_BYTES)
    size = len(files["model.safetensors"])
    with trio.fail_after(GUARD_S):
        async with serving(bob) as [address]:
            manifest = await fetcher.fetch_manifest(address, MODEL)
            entry = manifest.file("model.safetensors")
            assert entry is not None
            # The cut falls inside the second range: the first is on disk by then.
            async with cutting_proxy(address, cut_after_bytes=READ_BYTES + 300_000) as proxy:
                await fetcher.fetch_file(MODEL, entry, [proxy], destination)
    assert (destination / "model.safetensors").read_bytes() == files["model.safetensors"]
    # Bob sent more than the file (bytes were lost in the cut), yet every byte reached
    # the .part file once: the second attempt resumed from its length, not from 0.
    assert bob.server.stats["bytes_served"] > size
    assert fetcher.bytes_fetched == size


async def test_resume_from_an_existing_part_file(tmp_path: Path) -> None:
    files = write_model(tmp_path / "bob-models" / MODEL)
    bob = Node("bob", 2, tmp_path / "bob", {MODEL: tmp_path / "bob-models" / MODEL})
    peers, destination = client(tmp_path)
    data = files["model.safetensors"]
    part_path(destination, "model.safetensors").write_bytes(data[:1_000_000])
    fetcher = Fetcher(peers, read_bytes_max=READ_BYTES)
    with trio.fail_after(GUARD_S):
        async with serving(bob) as [address]:
            manifest = await fetcher.fetch_manifest(address, MODEL)
            entry = manifest.file("model.safetensors")
            assert entry is not None
            await fetcher.fetch_file(MODEL, entry, [address], destination)
    assert (destination / "model.safetensors").read_bytes() == data
    assert bob.server.stats["bytes_served"] == len(data) - 1_000_000


async def test_corrupt_bytes_are_refused_and_fetched_from_another_peer(tmp_path: Path) -> None:
    files = write_model(tmp_path / "carol-models" / MODEL)
    write_model(tmp_path / "bob-models" / MODEL)
    carol = Node("carol", 3, tmp_path / "carol", {MODEL: tmp_path / "carol-models" / MODEL})
    bob = Node("bob", 2, tmp_path / "bob", {MODEL: tmp_path / "bob-models" / MODEL})
    peers, destination = client(tmp_path)
    fetcher = Fetcher(peers, read_bytes_max=READ_BYTES)
    with trio.fail_after(GUARD_S):
        async with serving(carol, bob) as [carol_address, bob_address]:
            manifest = await fetcher.fetch_manifest(carol_address, MODEL)  # cached by carol
            entry = manifest.file("model.safetensors")
            assert entry is not None
            # Carol's disk rots after her manifest was computed: same size and mtime.
            path = tmp_path / "carol-models" / MODEL / "model.safetensors"
            stat = path.stat()
            with path.open("r+b") as file:
                file.seek(1_234_567)
                file.write(b"\xff\x00\xff")
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            assert await carol.store.manifest(MODEL) == manifest  # carol still vouches
            with pytest.raises(FetchFailedError, match="SHA-256"):
                await fetcher.fetch_file(MODEL, entry, [carol_address], destination)
            assert not part_path(destination, entry.name).exists()  # discarded
            assert not (destination / entry.name).exists()
            await fetcher.fetch_file(MODEL, entry, [carol_address, bob_address], destination)
    assert (destination / entry.name).read_bytes() == files["model.safetensors"]
    assert fetcher.corrupt_transfers == 2
    assert bob.server.stats["bytes_served"] == entry.size_bytes


async def raw_request(peers: PeerService, address: str, wire: dict[str, object]) -> object:
    """Send a hand-made request; return the decoded error reply."""
    body = msgpack.packb(wire, use_bin_type=True)
    async with peers.open_session(address, SERVICE_WEIGHTS, body) as (_peer, secure):
        frame = await secure.receive_frame()
    assert isinstance(frame, ControlFrame)
    return decode_error(frame.payload)


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "..", "sub/../../x", ".hidden"])
async def test_path_traversal_is_refused_and_the_service_keeps_serving(
    tmp_path: Path, name: str
) -> None:
    files = write_model(tmp_path / "bob-models" / MODEL)
    (tmp_path / "bob-models" / "x").write_bytes(b"secret outside the model")
    bob = Node("bob", 2, tmp_path / "bob", {MODEL: tmp_path / "bob-models" / MODEL})
    peers, destination = client(tmp_path)
    fetcher = Fetcher(peers, read_bytes_max=READ_BYTES)
    read = {"v": 1, "op": "read", "model": MODEL, "file": name, "offset": 0, "length": 10}
    with trio.fail_after(GUARD_S):
        async with serving(bob) as [address]:
            error = await raw_request(peers, address, read)
            assert error.code == ERROR_BAD_REQUEST  # type: ignore[attr-defined]
            assert bob.server.stats["bytes_served"] == 0
            missing = FileEntry(name="nope.bin", size_bytes=1, sha256=bytes(32))
            with pytest.raises(FetchFailedError, match=ERROR_UNKNOWN_FILE):
                await fetcher.fetch_file(MODEL, missing, [address], destination)
            with pytest.raises(PeerRefusedError, match=ERROR_UNKNOWN_MODEL):
                await fetcher.fetch_manifest(address, "other-model")
            manifest = await fetcher.fetch_manifest(address, MODEL)
            entry = manifest.file("config.json")
            assert entry is not None
            await fetcher.fetch_file(MODEL, entry, [address], destination)
    assert (destination / "config.json").read_bytes() == files["config.json"]
