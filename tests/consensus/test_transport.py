"""RaftTransport over real PeerServices on 127.0.0.1: messages arrive from the
authenticated peer, a member that speaks for another node is cut off (and the
receiver keeps serving), forwarded requests get their reply, an unknown address is
dropped and counted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from protocol.errors import RemoteProtocolError
from protocol.raft import Heartbeat, Message, encode
from protocol.session import SERVICE_RAFT
from tests.net.clusterkit import Cluster
from vramancer_node.consensus.transport import (
    BULK_KIND_RAFT,
    SESSION_STREAM,
    RaftTransport,
    Requester,
    RequestFailed,
)
from vramancer_node.net.handshake import Credentials
from vramancer_node.peering import PeerService

ALPHA = Cluster.create("raft-alpha")
ALICE = ALPHA.member("alice", serial=21)
BOB = ALPHA.member("bob", serial=22)
GUARD_S = 20.0


class Endpoint:
    def __init__(self, creds: Credentials, book: dict[str, str]) -> None:
        self.node_id = creds.identity.node_id
        self.peers = PeerService(
            creds, lambda: ALPHA.policy(), lambda: None, listen="127.0.0.1:0", timeout_s=5.0
        )
        self.transport = RaftTransport(self.peers, self.node_id, book.get)
        self.received: list[Message] = []
        self.arrived = trio.Event()

    def on_message(self, message: Message) -> None:
        self.received.append(message)
        self.arrived.set()
        self.arrived = trio.Event()

    async def on_request(self, requester: Requester, op: str, payload: Any) -> dict[str, Any]:
        return {"ok": True, "op": op, "echo": payload, "by": [requester.node_id, requester.roles]}

    async def wait_for(self, count: int) -> None:
        with trio.fail_after(GUARD_S):
            while len(self.received) < count:
                await self.arrived.wait()


@asynccontextmanager
async def pair() -> AsyncIterator[tuple[Endpoint, Endpoint]]:
    book: dict[str, str] = {}
    alice, bob = Endpoint(ALICE, book), Endpoint(BOB, book)
    async with trio.open_nursery() as nursery:
        for end in (alice, bob):
            (address,) = await nursery.start(end.peers.serve)
            book[end.node_id] = address
            await nursery.start(end.transport.run, end.on_message, end.on_request)
        yield alice, bob
        nursery.cancel_scope.cancel()


def heartbeat(frm: str, to: str, commit: int = 0) -> Heartbeat:
    return Heartbeat(term=3, from_id=frm, to_id=to, commit=commit)


async def test_messages_flow_both_ways_over_raft_streams() -> None:
    async with pair() as (alice, bob):
        for commit in range(5):
            alice.transport.send(heartbeat(alice.node_id, bob.node_id, commit))
        bob.transport.send(heartbeat(bob.node_id, alice.node_id))
        await bob.wait_for(5)
        await alice.wait_for(1)
        assert [m.commit for m in bob.received] == list(range(5))  # type: ignore[attr-defined]
        assert alice.transport.stats()["sent"] == 5 and bob.transport.stats()["received"] == 5


async def test_a_member_speaking_for_another_node_is_cut_off() -> None:
    async with pair() as (alice, bob):
        book = {bob.node_id: bob.transport.address_of(bob.node_id)}
        address = book[bob.node_id]
        assert address is not None
        async with alice.peers.open_session(address, SERVICE_RAFT, SESSION_STREAM) as (_, s):
            await s.send_bulk(BULK_KIND_RAFT, b"", encode(heartbeat("mallory", bob.node_id)))
            with trio.fail_after(GUARD_S), pytest.raises(trio.BrokenResourceError):
                while True:  # bob closes the session: our sends start failing
                    await s.send_bulk(BULK_KIND_RAFT, b"", b"\x00" * 1000)
                    await trio.sleep(0.01)
        assert bob.transport.dropped["misaddressed"] == 1
        assert bob.received == []
        # Bob still serves Alice's honest stream.
        alice.transport.send(heartbeat(alice.node_id, bob.node_id, 7))
        await bob.wait_for(1)
        assert bob.received[0].from_id == alice.node_id


async def test_garbage_on_a_stream_closes_it_and_is_refused() -> None:
    async with pair() as (alice, bob):
        address = bob.transport.address_of(bob.node_id)
        assert address is not None
        async with alice.peers.open_session(address, SERVICE_RAFT, SESSION_STREAM) as (_, s):
            await s.send_bulk(BULK_KIND_RAFT, b"", b"\x01not raft")
            with pytest.raises((trio.BrokenResourceError, RemoteProtocolError)):
                with trio.fail_after(GUARD_S):
                    while True:
                        await s.send_bulk(BULK_KIND_RAFT, b"", b"\x00" * 1000)
                        await trio.sleep(0.01)
        assert bob.received == []
        assert bob.peers.handshakes["RemoteProtocolError"] >= 1


async def test_forwarded_requests_get_their_reply() -> None:
    async with pair() as (alice, bob):
        reply = await alice.transport.request(bob.node_id, "propose", b"\x01payload")
        # The handler learns who asked, as the handshake authenticated it.
        assert reply == {
            "ok": True,
            "op": "propose",
            "echo": b"\x01payload",
            "by": [alice.node_id, ["member"]],
        }
        with pytest.raises(RequestFailed, match="no known address"):
            await alice.transport.request("nobody", "propose", b"")


async def test_a_message_to_an_unknown_address_is_dropped_and_counted() -> None:
    async with pair() as (alice, _bob):
        alice.transport.send(heartbeat(alice.node_id, "nobody"))
        with trio.fail_after(GUARD_S):
            while alice.transport.dropped["unknown_address"] == 0:
                await trio.sleep(0.01)
