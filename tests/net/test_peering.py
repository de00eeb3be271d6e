"""PeerService on real TCP (127.0.0.1, port 0): garbage, stalls, refusals, admission.

The listener must close every bad connection, count it in ``handshakes``, let its
handler return, and keep serving everyone else.  The only real waits are the
listener's handshake timeout, kept short (``TIMEOUT_S``).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from crypto import certs
from crypto.certs import SignedCertificate
from protocol.frames import frame_length_prefix
from tests.net.clusterkit import (
    Cluster,
    RawPeer,
    credentials,
    found_cluster,
    identity,
)
from vramancer_node.config import parse_hostport
from vramancer_node.net.handshake import (
    Admitter,
    AuthenticatedPeer,
    Credentials,
    HandshakeFailed,
    TrustPolicy,
)
from vramancer_node.peering import PeerService, join_via

TIMEOUT_S = 0.4
"""The listener's handshake deadline: long for a 127.0.0.1 handshake, short for a test."""
GUARD_S = 10.0
"""Upper bound on any wait in these tests; only reached if something hangs."""

ALPHA = Cluster.create("alpha")
BETA = Cluster.create("beta")
ALICE = ALPHA.member("alice", serial=11)
BOB = ALPHA.member("bob", serial=12)


class WatchedPeerService(PeerService):
    """A PeerService that also counts its connection handlers in and out, and checks
    that each handler closed its socket before returning (not left to the GC)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.live_handlers = 0
        self.finished_handlers = 0
        self.unclosed_sockets = 0
        self._changed = trio.Event()

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.live_handlers += 1
        try:
            await super()._handle(stream)
        finally:
            self.unclosed_sockets += stream.socket.fileno() != -1
            self.live_handlers -= 1
            self.finished_handlers += 1
            self._changed.set()
            self._changed = trio.Event()

    async def wait_finished(self, count: int) -> None:
        """Wait until ``count`` handlers have returned."""
        with trio.fail_after(GUARD_S):
            while self.finished_handlers < count:
                await self._changed.wait()


def listener(
    creds: Credentials = BOB,
    policy: TrustPolicy | None = None,
    admitter: Admitter | None = None,
) -> WatchedPeerService:
    trust = policy or ALPHA.policy()
    return WatchedPeerService(
        creds, lambda: trust, lambda: admitter, listen="127.0.0.1:0", timeout_s=TIMEOUT_S
    )


def client(creds: Credentials = ALICE, policy: TrustPolicy | None = None) -> PeerService:
    trust = policy or ALPHA.policy()
    return PeerService(creds, lambda: trust, lambda: None, listen="127.0.0.1:0", timeout_s=GUARD_S)


@asynccontextmanager
async def serving(service: PeerService) -> AsyncIterator[str]:
    """Run ``service``'s listener; yield its address."""
    async with trio.open_nursery() as nursery:
        (address,) = await nursery.start(service.serve)
        yield address
        nursery.cancel_scope.cancel()


async def open_raw(address: str) -> trio.SocketStream:
    host, port = parse_hostport(address)
    return await trio.open_tcp_stream(host, port)


async def read_until_closed(stream: trio.SocketStream) -> bytes:
    """Everything the listener sends until it closes the connection."""
    received = bytearray()
    with trio.fail_after(GUARD_S):
        try:
            while data := await stream.receive_some(65536):
                received += data
        except trio.BrokenResourceError:
            pass  # a reset is a close too
    return bytes(received)


async def send_garbage(address: str, garbage: bytes) -> None:
    """Connect, send ``garbage``, shut down writing, read until the listener closes."""
    stream = await open_raw(address)
    async with stream:
        try:
            await stream.send_all(garbage)
            await stream.send_eof()
        except trio.BrokenResourceError:
            pass  # the listener already gave up on us
        await read_until_closed(stream)


def framed(*messages: bytes) -> bytes:
    return b"".join(frame_length_prefix(len(m)) + m for m in messages)


# -- garbage -----------------------------------------------------------------------------

GARBAGE = {
    "http": (b"GET / HTTP/1.1\r\nHost: node\r\n\r\n", "connection_lost"),
    "zero-length": (b"\x00\x00", "malformed"),
    "short-message-1": (framed(b"hello"), "noise"),
    "message-1-with-payload": (framed(bytes(range(40))), "malformed"),
    "low-order-ephemeral": (framed(bytes(32)), "noise"),
    "nothing": (b"", "connection_lost"),
}


async def test_garbage_is_counted_and_a_member_still_gets_in() -> None:
    service = listener()
    async with serving(service) as address:
        for garbage, _ in GARBAGE.values():
            await send_garbage(address, garbage)
        await service.wait_finished(len(GARBAGE))
        expected = Counter(reason for _, reason in GARBAGE.values())
        assert service.handshakes == expected
        assert service.live_handlers == service.unclosed_sockets == 0

        peer = await client().connect(address)
        assert peer.node_id == identity("bob").node_id
        assert peer.certificate is not None and peer.certificate.serial == 12
        await service.wait_finished(len(GARBAGE) + 1)
        assert service.handshakes["ok"] == 1
        assert service.live_handlers == service.unclosed_sockets == 0


FUZZ_SEED = 20261120
FUZZ_CONNECTIONS = 24


def fuzz_payload(rng: random.Random) -> bytes:
    """Random bytes, sometimes shaped like the start of a handshake."""
    shape = rng.randrange(4)
    if shape == 0:
        return rng.randbytes(rng.randrange(0, 300))
    if shape == 1:
        return framed(*(rng.randbytes(rng.randrange(1, 120)) for _ in range(rng.randrange(1, 4))))
    if shape == 2:  # a plausible ephemeral key, then junk as message 3
        return framed(rng.randbytes(32), rng.randbytes(rng.randrange(1, 200)))
    return frame_length_prefix(rng.randrange(1, 65536)) + rng.randbytes(rng.randrange(0, 50))


async def test_a_fuzzing_client_does_not_stop_the_listener() -> None:
    rng = random.Random(FUZZ_SEED)
    payloads = [fuzz_payload(rng) for _ in range(FUZZ_CONNECTIONS)]
    service = listener()
    async with serving(service) as address:
        async with trio.open_nursery() as nursery:
            for payload in payloads:
                nursery.start_soon(send_garbage, address, payload)
        await service.wait_finished(FUZZ_CONNECTIONS)
        peer = await client().connect(address)
        await service.wait_finished(FUZZ_CONNECTIONS + 1)
    seen = dict(service.handshakes)
    context = f"reproduce with FUZZ_SEED={FUZZ_SEED}: {seen}"
    assert peer.node_id == identity("bob").node_id, context
    assert service.handshakes["ok"] == 1, context
    assert "internal_error" not in seen, context
    assert sum(seen.values()) == FUZZ_CONNECTIONS + 1, context
    assert service.live_handlers == service.unclosed_sockets == 0, context


# -- stalls --------------------------------------------------------------------------------


async def _half_of_message_1(raw: RawPeer) -> None:
    await raw.send((frame_length_prefix(32) + raw.hs.write_message(b""))[:20])


async def _message_1_only(raw: RawPeer) -> None:
    await raw.write()
    await raw.read()  # message 2 arrived; message 3 never will


@pytest.mark.parametrize("stall", [_half_of_message_1, _message_1_only], ids=["half-1", "1-of-3"])
async def test_a_stalled_client_is_cut_off_and_others_are_served_meanwhile(
    stall: Callable[[RawPeer], Awaitable[None]],
) -> None:
    service = listener()
    async with serving(service) as address:
        stream = await open_raw(address)
        async with stream:
            started = time.monotonic()
            await stall(RawPeer(stream, initiator=True))

            # While the stalled handshake is pending, a member still gets in.
            peer = await client().connect(address)
            assert peer.node_id == identity("bob").node_id
            await service.wait_finished(1)
            assert service.live_handlers == 1  # only the stalled one
            assert "timeout" not in service.handshakes

            await read_until_closed(stream)
            waited_s = time.monotonic() - started
        await service.wait_finished(2)
    assert TIMEOUT_S * 0.9 <= waited_s < GUARD_S
    assert service.handshakes == Counter({"ok": 1, "timeout": 1})
    assert service.live_handlers == service.unclosed_sockets == 0


# -- refusals and admission ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("creds", "revoked", "reason"),
    [
        (ALICE, {11}, "certificate_revoked"),
        (BETA.member("mallory", serial=11), set(), "unknown_cluster"),
        (
            ALPHA.member("old", serial=13, now=1_000_000_000, ttl_s=3600),
            set(),
            "certificate_expired",
        ),
    ],
    ids=["revoked", "other-cluster", "expired"],
)
async def test_the_refusal_reason_reaches_the_client(
    creds: Credentials, revoked: set[int], reason: str
) -> None:
    service = listener(policy=ALPHA.policy(revoked=revoked))
    async with serving(service) as address:
        with pytest.raises(HandshakeFailed) as failure:
            await client(creds).connect(address)
        await service.wait_finished(1)
    assert failure.value.reason == "refused_by_peer"
    assert str(failure.value).startswith(f"the peer refused: {reason}: ")
    assert service.handshakes == Counter({reason: 1})
    assert service.unclosed_sockets == 0


async def test_a_node_that_is_no_member_refuses_everyone() -> None:
    service = WatchedPeerService(
        BOB, lambda: None, lambda: None, listen="127.0.0.1:0", timeout_s=TIMEOUT_S
    )
    async with serving(service) as address:
        with pytest.raises((HandshakeFailed, trio.BrokenResourceError)):
            await client().connect(address)
        await service.wait_finished(1)
    assert service.handshakes == Counter({"not_member": 1})
    assert service.unclosed_sockets == 0


async def test_join_over_tcp_then_greet_as_a_member(tmp_path: Path) -> None:
    now = time.time()  # join_via checks certificates against the wall clock
    founder = found_cluster(tmp_path, now=now)
    token, token_id = founder.token(uses=1, now=now)
    service = listener(founder.creds, founder.policy, founder.admitter(now))
    carol = credentials("carol", None)
    async with serving(service) as address:
        admission = await join_via(address, carol, token, "carol-box", GUARD_S)
        cert = certs.verify(
            SignedCertificate.decode(admission.certificate),
            founder.policy.ca_pubkey,
            now=now,
            revoked_serials=(),
        )
        assert cert.node_pubkey == identity("carol").public_key and cert.serial == 2

        # The token is used up: a second joiner is refused, and told why.
        with pytest.raises(HandshakeFailed) as refused:
            await join_via(address, credentials("dave", None), token, "dave-box", GUARD_S)
        assert str(refused.value).startswith("the peer refused: token_exhausted: ")

        member = PeerService(
            credentials("carol", admission.certificate),
            lambda: TrustPolicy(ca_pubkey=admission.ca_pubkey, revoked_serials=(), now=lambda: now),
            lambda: None,
            listen="127.0.0.1:0",
            timeout_s=GUARD_S,
        )
        peer: AuthenticatedPeer = await member.connect(address)
        assert peer.node_id == identity("founder").node_id
        await service.wait_finished(3)
    assert service.handshakes == Counter({"ok": 2, "token_exhausted": 1})
    assert service.unclosed_sockets == 0
    record = founder.admin.tokens.get(token_id)
    assert record is not None and record.uses_left == 0
