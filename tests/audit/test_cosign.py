"""Members exchange and cosign checkpoints; a node that forks its log is refused."""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import msgpack
import pytest
import trio

from crypto.audit import CosignatureV1Verifier, parse_note
from crypto.identity import NodeIdentity
from protocol.errors import RemoteProtocolError
from tests.audit.helpers import CLUSTER_ID, make_identity, verify_dir
from vramancer_node.audit import kinds
from vramancer_node.audit.cosign import ExchangeResult, exchange_checkpoints, witness_name
from vramancer_node.audit.layout import WITNESS_STATE_FILE_NAME, audit_dir
from vramancer_node.audit.service import AuditService

Send = Callable[[bytes], Awaitable[None]]
Receive = Callable[[], Awaitable[bytes]]


@pytest.fixture
def dirs() -> Iterator[Callable[[], Path]]:
    made: list[Path] = []

    def make() -> Path:
        made.append(Path(tempfile.mkdtemp(prefix="vrm-", dir="/tmp")))
        return made[-1]

    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


@asynccontextmanager
async def running(state_dir: Path, identity: NodeIdentity) -> AsyncIterator[AuditService]:
    service = AuditService(state_dir, identity, CLUSTER_ID, wall_clock=lambda: 1_700_000_000.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        yield service
        nursery.cancel_scope.cancel()


async def append(service: AuditService, count: int, tag: str = "t") -> None:
    for number in range(count):
        await service.append(kinds.TOKEN_USED, {"token_id": f"{tag}{number}", "node_id": "n"})


def channel_pair() -> tuple[tuple[Send, Receive], tuple[Send, Receive]]:
    """Two ends of a message channel; sends never wait for the peer (like a socket)."""
    a_send, b_receive = trio.open_memory_channel[bytes](16)
    b_send, a_receive = trio.open_memory_channel[bytes](16)
    return (a_send.send, a_receive.receive), (b_send.send, b_receive.receive)


async def exchange(a: AuditService, b: AuditService) -> tuple[ExchangeResult, ExchangeResult]:
    (a_send, a_receive), (b_send, b_receive) = channel_pair()
    results: dict[str, ExchangeResult] = {}

    async def side(
        name: str, me: AuditService, peer: AuditService, send: Send, rcv: Receive
    ) -> None:
        results[name] = await exchange_checkpoints(
            send, rcv, me, peer.identity.node_id, peer.identity.public_key
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(side, "a", a, b, a_send, a_receive)
        nursery.start_soon(side, "b", b, a, b_send, b_receive)
    return results["a"], results["b"]


def cosigners_of(note: str) -> list[str]:
    return [signature.name for signature in parse_note(note).signatures[1:]]


async def test_two_members_cosign_each_other(dirs: Callable[[], Path]) -> None:
    alice_dir, bob_dir = dirs(), dirs()
    alice_id, bob_id = make_identity(1), make_identity(2)
    async with running(alice_dir, alice_id) as alice, running(bob_dir, bob_id) as bob:
        await append(alice, 5)
        await append(bob, 3)
        for_alice, for_bob = await exchange(alice, bob)
        assert for_alice.our_cosigned and for_alice.peer_cosigned
        assert for_bob.our_cosigned and for_bob.peer_cosigned
        assert (for_alice.our_size, for_alice.peer_size) == (5, 3)

        # More records: the next exchange carries a consistency proof from size 5.
        await append(alice, 6, tag="u")
        for_alice, _ = await exchange(alice, bob)
        assert for_alice.our_cosigned and for_alice.our_size == 11
        latest = await alice.latest_checkpoint()
        assert latest is not None
        assert cosigners_of(latest.note) == [witness_name(bob.origin)]
        assert await alice.cosigned_size(witness_name(bob.origin)) == 11

    report = verify_dir(alice_dir)
    assert report.ok and report.cosigned_by == (witness_name(bob.origin),)
    # Bob's witness remembers what it cosigned for Alice, durably.
    state = json.loads((audit_dir(bob_dir) / WITNESS_STATE_FILE_NAME).read_text())
    assert state["logs"][alice.origin]["size"] == 11


async def test_a_split_view_is_refused_and_recorded(dirs: Callable[[], Path]) -> None:
    alice_id, bob_id = make_identity(1), make_identity(2)
    bob_dir = dirs()
    async with running(bob_dir, bob_id) as bob:
        async with running(dirs(), alice_id) as alice:
            await append(alice, 4, tag="honest")
            for_alice, _ = await exchange(alice, bob)
            assert for_alice.our_cosigned
        # Alice again, same key and cluster, but another history of the same size.
        async with running(dirs(), alice_id) as fork:
            await append(fork, 4, tag="forged")
            for_fork, for_bob = await exchange(fork, bob)
        assert not for_fork.our_cosigned
        assert for_fork.our_refusal is not None
        assert "same size, different roots" in for_fork.our_refusal
        assert not for_bob.peer_cosigned and for_bob.peer_refusal == for_fork.our_refusal
        tail = await bob.tail(5)
    refused = [r for r in tail["records"] if r["kind"] == kinds.COSIGN_REFUSED]
    assert len(refused) == 1
    assert refused[0]["body"]["node_id"] == alice_id.node_id
    assert refused[0]["body"]["size"] == 4
    assert verify_dir(bob_dir).ok


async def test_a_rollback_is_refused(dirs: Callable[[], Path]) -> None:
    alice_id, bob_id = make_identity(1), make_identity(2)
    async with running(dirs(), bob_id) as bob:
        async with running(dirs(), alice_id) as alice:
            await append(alice, 6)
            assert (await exchange(alice, bob))[0].our_cosigned
        async with running(dirs(), alice_id) as shorter:
            await append(shorter, 3)
            for_shorter, _ = await exchange(shorter, bob)
    assert not for_shorter.our_cosigned
    assert "below cosigned size 6" in (for_shorter.our_refusal or "")


async def test_witness_state_survives_a_restart(dirs: Callable[[], Path]) -> None:
    alice_id, bob_id = make_identity(1), make_identity(2)
    bob_dir = dirs()
    async with running(dirs(), alice_id) as alice:
        await append(alice, 4, tag="honest")
        async with running(bob_dir, bob_id) as bob:
            assert (await exchange(alice, bob))[0].our_cosigned
        async with running(dirs(), alice_id) as fork:
            await append(fork, 4, tag="forged")
            async with running(bob_dir, bob_id) as bob_again:
                for_fork, _ = await exchange(fork, bob_again)
    assert not for_fork.our_cosigned


async def test_a_forged_cosignature_is_the_peers_fault(dirs: Callable[[], Path]) -> None:
    alice_id, mallory_id = make_identity(1), make_identity(3)
    async with running(dirs(), alice_id) as alice, running(dirs(), mallory_id) as mallory:
        await append(alice, 2)
        (a_send, a_receive), (m_send, m_receive) = channel_pair()

        async def mallory_side() -> None:
            offer = msgpack.unpackb(await m_receive())
            assert offer["t"] == "checkpoint"
            # Mallory's witness key id, but a signature that is not one.
            name = witness_name(mallory.origin)
            key_id = CosignatureV1Verifier(name=name, public_key=mallory_id.public_key).key_id
            blob = key_id.to_bytes(4, "big") + bytes(72)
            line = f"\u2014 {name} {base64.b64encode(blob).decode()}\n"
            await m_send(msgpack.packb({"v": 1, "t": "cosignature", "line": line}))

        expected = pytest.RaisesExc(RemoteProtocolError, match="does not verify")
        with pytest.RaisesGroup(expected, flatten_subgroups=True):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(mallory_side)
                await exchange_checkpoints(
                    a_send, a_receive, alice, mallory_id.node_id, mallory_id.public_key
                )
        latest = await alice.latest_checkpoint()
        assert latest is not None and cosigners_of(latest.note) == []


@pytest.mark.parametrize(
    "message",
    [
        b"\xc1",
        msgpack.packb([1, 2]),
        msgpack.packb({"v": 2, "t": "done"}),
        msgpack.packb({"v": 1, "t": "gossip"}),
        msgpack.packb({"v": 1, "t": "checkpoint", "note": "x", "old_size": -1, "proof": []}),
        msgpack.packb({"v": 1, "t": "checkpoint", "note": "x", "old_size": 0, "proof": ["a"]}),
        msgpack.packb({"v": 1, "t": "cosignature", "line": "x\n"}),  # nothing was asked
        b"\x00" * 70_000,
    ],
)
async def test_malformed_messages_are_the_peers_fault(
    dirs: Callable[[], Path], message: bytes
) -> None:
    peer = make_identity(3)
    sent: list[bytes] = []

    async def send(data: bytes) -> None:
        sent.append(data)

    async def receive() -> bytes:
        return message

    async with running(dirs(), make_identity(1)) as alice:
        with pytest.raises(RemoteProtocolError):
            await exchange_checkpoints(send, receive, alice, peer.node_id, peer.public_key)
    assert msgpack.unpackb(sent[0])["t"] == "checkpoint"


async def test_a_key_that_is_not_the_peers_is_a_caller_bug(dirs: Callable[[], Path]) -> None:
    async with running(dirs(), make_identity(1)) as alice:
        (send, receive), _ = channel_pair()
        with pytest.raises(ValueError, match="does not belong"):
            await exchange_checkpoints(
                send, receive, alice, make_identity(2).node_id, make_identity(3).public_key
            )
