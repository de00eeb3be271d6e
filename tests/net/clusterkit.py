"""Test kit for the secure channel: clusters, credentials, both sides of a handshake,
and a hand-driven Noise peer that can send exactly the bytes a test wants.

Keys derive from labels (SHA-256 of the label), so every identity, CA and Noise
static key is the same in every run; only Noise ephemerals are fresh, and no
assertion depends on them.  Certificates use the fixed wall-clock ``NOW_S``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import trio
import trio.testing

from crypto import binding, certs
from crypto.certs import ClusterCA
from crypto.identity import NodeIdentity, generate_identity
from crypto.noise import CipherState, HandshakeState, KeyPair
from protocol.frames import MessageDecoder, encode_control, frame_length_prefix
from vramancer_node.cluster import Admin, ClusterStore
from vramancer_node.net.handshake import (
    PROLOGUE,
    PROTOCOL_NAME,
    Admission,
    Admitter,
    AuthenticatedPeer,
    Credentials,
    HandshakeFailed,
    TrustPolicy,
    exchange_verdicts,
    noise_handshake,
    request_admission,
    respond,
)

NOW_S = 1_750_000_000.0
"""The wall clock of every certificate check in these tests."""
CERT_TTL_S = 30 * 24 * 3600
PROTOCOL_VERSION = 1
SOFTWARE_VERSION = "0.0.0-test"


def seed(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def identity(label: str) -> NodeIdentity:
    return generate_identity(seed(f"identity:{label}"))


def noise_static(label: str) -> KeyPair:
    return KeyPair.from_private(seed(f"noise:{label}"))


def credentials(
    label: str,
    certificate: bytes | None,
    *,
    protocol_version: int = PROTOCOL_VERSION,
    node: NodeIdentity | None = None,
) -> Credentials:
    return Credentials(
        identity=node or identity(label),
        noise_static=noise_static(label),
        certificate=certificate,
        software_version=SOFTWARE_VERSION,
        protocol_version=protocol_version,
    )


@dataclass(frozen=True)
class Cluster:
    """A cluster CA and the certificates it issues."""

    ca: ClusterCA

    @classmethod
    def create(cls, label: str = "alpha") -> Cluster:
        return cls(ClusterCA.generate(seed(f"ca:{label}")))

    def certificate(
        self,
        node_pubkey: bytes,
        *,
        name: str,
        serial: int,
        roles: Collection[str] = ("member",),
        now: float = NOW_S,
        ttl_s: int = CERT_TTL_S,
    ) -> bytes:
        signed = certs.issue(
            self.ca,
            node_pubkey=node_pubkey,
            node_name=name,
            roles=roles,
            serial=serial,
            now=now,
            ttl_s=ttl_s,
        )
        return signed.encode()

    def member(
        self, label: str, *, serial: int, now: float = NOW_S, ttl_s: int = CERT_TTL_S
    ) -> Credentials:
        """Credentials of ``label`` with a certificate of this cluster."""
        node = identity(label)
        cert = self.certificate(node.public_key, name=label, serial=serial, now=now, ttl_s=ttl_s)
        return credentials(label, cert, node=node)

    def policy(self, *, revoked: Collection[int] = (), now: float = NOW_S) -> TrustPolicy:
        return TrustPolicy(ca_pubkey=self.ca.pubkey, revoked_serials=revoked, now=lambda: now)


def with_protocol_version(creds: Credentials, version: int) -> Credentials:
    return replace(creds, protocol_version=version)


@dataclass(frozen=True)
class Founder:
    """A founded cluster on disk with its admin: what a first node holds."""

    store: ClusterStore
    admin: Admin
    creds: Credentials
    policy: TrustPolicy

    def admitter(self, now: float = NOW_S) -> Admitter:
        async def admit(request: Any, peer: Any, h: bytes) -> Any:
            return self.admin.admit(request, peer, h, now)[0]

        return admit

    def token(self, *, uses: int = 1, ttl_s: int = 600, now: float = NOW_S) -> tuple[str, str]:
        """A join token's text and id."""
        text, info = self.admin.create_token(now, ttl_s, uses)
        return text, str(info["token_id"])


def found_cluster(state_dir: Path, label: str = "founder", now: float = NOW_S) -> Founder:
    """Found a cluster in ``state_dir`` as the daemon does (``ClusterStore.found``)."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # the daemon's job
    store = ClusterStore(state_dir)
    node = identity(label)
    membership = store.found(node, label, now)
    ca = store.load_ca()
    assert ca is not None
    policy = TrustPolicy(
        ca_pubkey=membership.ca_pubkey,
        revoked_serials=membership.revoked_serials,
        now=lambda: now,
    )
    creds = credentials(label, membership.certificate, node=node)
    return Founder(store=store, admin=Admin(store, ca, membership), creds=creds, policy=policy)


# -- both sides of a handshake over memory streams -------------------------------------

Side = Callable[[trio.abc.HalfCloseableStream], Awaitable[object]]


def member_side(creds: Credentials, policy: TrustPolicy) -> Side:
    """A member opening a session (what ``PeerService.connect`` runs)."""

    async def run(transport: trio.abc.HalfCloseableStream) -> AuthenticatedPeer:
        secure, payload, h = await noise_handshake(transport, creds, initiator=True)
        return await exchange_verdicts(secure, payload, h, creds, policy)

    return run


def responder_side(
    creds: Credentials, policy: TrustPolicy, admitter: Admitter | None = None
) -> Side:
    """The listener's side (what ``PeerService`` runs per connection)."""

    async def run(transport: trio.abc.HalfCloseableStream) -> AuthenticatedPeer:
        secure, payload, h = await noise_handshake(transport, creds, initiator=False)
        return await respond(secure, payload, h, creds, policy, admitter)

    return run


def joiner_side(creds: Credentials, token: str, node_name: str, now: float = NOW_S) -> Side:
    """A node without certificate asking to be admitted (what ``join_via`` runs)."""

    async def run(transport: trio.abc.HalfCloseableStream) -> Admission:
        secure, payload, h = await noise_handshake(transport, creds, initiator=True)
        return await request_admission(secure, payload, h, creds, token, node_name, lambda: now)

    return run


async def run_pair(initiator: Side, responder: Side) -> tuple[object, object]:
    """Run both sides to the end; each result is its return value or its HandshakeFailed.

    A side that finishes shuts down its sending direction only, as a TCP close would
    look to the peer: the peer reads EOF, and what it still writes is not an error.
    Anything but HandshakeFailed propagates and fails the test.
    """
    client, server = trio.testing.memory_stream_pair()
    results: list[object] = [None, None]

    async def run(index: int, side: Side, transport: trio.abc.HalfCloseableStream) -> None:
        try:
            results[index] = await side(transport)
        except HandshakeFailed as exc:
            results[index] = exc
        await transport.send_eof()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, 0, initiator, client)
        nursery.start_soon(run, 1, responder, server)
    await client.aclose()
    await server.aclose()
    return results[0], results[1]


# -- a hand-driven peer ----------------------------------------------------------------


class RawPeer:
    """One side of Noise XX driven by hand over a transport, to send crafted bytes.

    ``received`` keeps every byte read from the transport; ``send`` sends any bytes.
    """

    def __init__(
        self,
        transport: trio.abc.HalfCloseableStream,
        *,
        initiator: bool,
        prologue: bytes = PROLOGUE,
        static: KeyPair | None = None,
    ) -> None:
        self.transport = transport
        self.static = static or KeyPair.generate()
        self.hs = HandshakeState.initialize(
            protocol_name=PROTOCOL_NAME, initiator=initiator, prologue=prologue, s=self.static
        )
        self.decoder = MessageDecoder()
        self.ciphers: tuple[CipherState, CipherState] | None = None

    async def send(self, data: bytes) -> None:
        await self.transport.send_all(data)

    async def send_message(self, message: bytes) -> None:
        await self.send(frame_length_prefix(len(message)) + message)

    async def receive_message(self) -> bytes | None:
        """The next length-prefixed message, or None at end of stream."""
        while (message := self.decoder.next_message()) is None:
            data = await self.transport.receive_some(65536)
            if not data:
                return None
            self.decoder.feed(data)
        return message

    async def write(self, payload: bytes = b"") -> None:
        await self.send_message(self.hs.write_message(payload))

    async def read(self) -> bytes:
        message = await self.receive_message()
        assert message is not None, "the node closed during the handshake"
        return self.hs.read_message(message)

    def payload(self, creds: Credentials) -> bytes:
        """An identity payload binding our static key to ``creds.identity``."""
        return binding.encode_identity_payload(
            creds.identity.signing_key,
            noise_static_pub=self.static.public,
            certificate=creds.certificate,
            software_version=creds.software_version,
            protocol_version=creds.protocol_version,
        )

    async def run_noise(self, payload: bytes) -> bytes:
        """The three XX messages with ``payload`` in ours; returns the peer's payload."""
        if self.hs.is_initiator:
            await self.write()
            remote = await self.read()
            await self.write(payload)
        else:
            await self.read()
            await self.write(payload)
            remote = await self.read()
        self.ciphers = self.hs.split()
        return remote

    async def send_plaintext(self, plaintext: bytes) -> None:
        """One encrypted transport message (a frame, or a bulk chunk)."""
        assert self.ciphers is not None
        await self.send_message(self.ciphers[0].encrypt_with_ad(b"", plaintext))

    async def send_control(self, payload: bytes) -> None:
        await self.send_plaintext(encode_control(payload))

    async def receive_plaintext(self) -> bytes | None:
        assert self.ciphers is not None
        message = await self.receive_message()
        return None if message is None else self.ciphers[1].decrypt_with_ad(b"", message)

    def auth(self, creds: Credentials, handshake_hash: bytes | None = None) -> bytes:
        """Our Auth message over this session's ``h`` (or another one, to replay)."""
        h = self.hs.handshake_hash if handshake_hash is None else handshake_hash
        signature = binding.sign_handshake_hash(creds.identity.signing_key, h)
        return binding.Auth(signature=signature).encode()

    async def drain(self) -> bytes:
        """Read until the node closes; return what arrived after the decoder's buffer."""
        rest = self.decoder.take_pending()
        while data := await self.transport.receive_some(65536):
            rest += data
        return rest


class TapStream(trio.abc.HalfCloseableStream):
    """Passes everything through and records what was sent (to replay it later)."""

    def __init__(self, inner: trio.abc.HalfCloseableStream) -> None:
        self.inner = inner
        self.sent = bytearray()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.sent += data
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()


def tapped(side: Side, tap: list[TapStream]) -> Side:
    """``side`` over a TapStream, appended to ``tap`` for the test to read."""

    async def run(transport: trio.abc.HalfCloseableStream) -> object:
        stream = TapStream(transport)
        tap.append(stream)
        return await side(stream)

    return run


def raw_side(script: Callable[[RawPeer], Awaitable[object]], *, initiator: bool) -> Side:
    """A side played by a RawPeer running ``script``."""

    async def run(transport: trio.abc.HalfCloseableStream) -> object:
        return await script(RawPeer(transport, initiator=initiator))

    return run
