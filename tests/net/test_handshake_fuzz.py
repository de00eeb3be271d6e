"""Fuzz the handshake: random bytes at every layer, only HandshakeFailed comes out.

Four depths, each against the real code:

1. raw bytes before the handshake (both roles), split at random points;
2. a valid Noise exchange carrying a random identity payload;
3. a completed Noise exchange (optionally a valid Auth) followed by random
   encrypted frames, many of them near-valid admission messages;
4. the same against a joiner waiting for its grant.

Any other exception escapes ``run_pair`` and fails the test; a hang trips the
mock-clock deadline.  While the fuzzer talks to the responder, a genuine member
authenticates against the same responder: garbage never blocks the others.
Examples are derandomised, so every run tries the same inputs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import msgpack
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import tokens
from crypto.binding import RefusalReason
from crypto.certs import ClusterCA
from protocol.frames import FrameType, frame_length_prefix
from tests.net.clusterkit import (
    NOW_S,
    Cluster,
    RawPeer,
    credentials,
    identity,
    joiner_side,
    member_side,
    raw_side,
    responder_side,
    run_pair,
)
from vramancer_node.cluster import Admin, ClusterStore, Membership
from vramancer_node.net.handshake import (
    Admission,
    AuthenticatedPeer,
    Credentials,
    HandshakeFailed,
)

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=150)
DEADLINE_S = 1000.0
"""Mock seconds; nothing in a handshake waits on time, so reaching this is a hang."""

ALPHA = Cluster.create("alpha")
BETA = Cluster.create("beta")
ALICE = ALPHA.member("alice", serial=11)
BOB = ALPHA.member("bob", serial=12)
CAROL = credentials("carol", None)
TOKEN_SECRET = bytes(range(32))
TOKEN = tokens.format_token(ALPHA.ca.fingerprint, TOKEN_SECRET)
TOKEN_ID = bytes.fromhex(tokens.token_id_of(tokens.secret_hash_of(TOKEN_SECRET)))

KNOWN_REASONS = {
    "connection_lost",
    "malformed",
    "noise",
    "bad_signature",
    "refused_by_peer",
    "ca_mismatch",
    "rogue_responder",
} | {reason.name.lower() for reason in RefusalReason}


def run_trio(main: Callable[[], Awaitable[None]]) -> None:
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def typed_failure(result: object) -> HandshakeFailed:
    assert isinstance(result, HandshakeFailed), f"expected HandshakeFailed, got {result!r}"
    assert result.reason in KNOWN_REASONS, result.reason
    return result


@dataclass
class Listener:
    """An admin of the alpha cluster, as the responder of every example."""

    admin: Admin

    async def serve(self, script: Callable[[RawPeer], Awaitable[object]]) -> object:
        """Run ``script`` as the initiator, and a genuine member alongside it."""
        results: list[object] = []

        async def fuzzed() -> None:
            results.extend(await run_pair(raw_side(script, initiator=True), self.side()))

        async def genuine() -> None:
            a, b = await run_pair(member_side(ALICE, ALPHA.policy()), self.side())
            assert isinstance(a, AuthenticatedPeer) and isinstance(b, AuthenticatedPeer)

        with trio.fail_after(DEADLINE_S):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(fuzzed)
                nursery.start_soon(genuine)
        return results[1]

    def side(self) -> Callable[[trio.abc.HalfCloseableStream], Awaitable[object]]:
        async def admit(request, peer, h):  # type: ignore[no-untyped-def]
            return self.admin.admit(request, peer, h, NOW_S)[0]

        return responder_side(BOB, ALPHA.policy(), admit)


@pytest.fixture(scope="module")
def listener(tmp_path_factory: pytest.TempPathFactory) -> Listener:
    store = ClusterStore(Path(tmp_path_factory.mktemp("fuzz-admin")))
    membership = Membership(
        ca_pubkey=ALPHA.ca.pubkey,
        certificate=BOB.certificate or b"",
        gossip_keys=(bytes(32),),
        next_serial=100,
    )
    admin = Admin(store, ALPHA.ca, membership)
    # TOKEN is live here, so a proof naming its id reaches the HMAC check.
    admin.tokens.create(now=NOW_S, uses=5, roles=("member",), rng_bytes=TOKEN_SECRET)
    return Listener(admin)


# -- strategies --------------------------------------------------------------------------


def framed(messages: list[bytes]) -> bytes:
    return b"".join(frame_length_prefix(len(m)) + m for m in messages)


wire_bytes = st.one_of(
    st.binary(max_size=400),
    st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=5).map(framed),
    st.tuples(st.binary(min_size=32, max_size=32), st.lists(st.binary(min_size=1), max_size=3)).map(
        lambda parts: framed([parts[0], *parts[1]])
    ),
)
piece_sizes = st.lists(st.integers(min_value=1, max_value=80), min_size=1, max_size=6)

msgpack_ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
any_value = st.one_of(
    st.none(),
    st.booleans(),
    msgpack_ints,
    st.floats(allow_nan=False),
    st.binary(max_size=80),
    st.text(max_size=80),
    st.lists(st.text(max_size=8), max_size=3),
    st.dictionaries(st.text(max_size=4), msgpack_ints, max_size=2),
)


def _cert_choices() -> list[bytes | None]:
    other = ClusterCA.generate(b"\x07" * 32)
    forged = Cluster(other).certificate(identity("carol").public_key, name="carol", serial=2)
    return [ALICE.certificate, BOB.certificate, forged, b"\x80", b"", None]


printable = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
FIELD_VALUES = {
    "token_proof": st.one_of(
        st.binary(min_size=40, max_size=40),
        st.binary(min_size=32, max_size=32).map(lambda mac: TOKEN_ID + mac),
    ),
    "node_name": st.text(printable, min_size=1, max_size=64),
    "certificate": st.sampled_from(_cert_choices()),
    "ca_pubkey": st.sampled_from([ALPHA.ca.pubkey, ALPHA.ca.pubkey, BETA.ca.pubkey, bytes(32)]),
    "gossip_key": st.binary(min_size=32, max_size=32),
    "reason_code": st.integers(min_value=0, max_value=12),
    "message": st.text(printable, max_size=260),
    "signature": st.binary(min_size=64, max_size=64),
    "version": st.integers(min_value=0, max_value=2),
    "identity_pubkey": st.sampled_from([ALICE.identity.public_key, bytes(32)]),
    "static_sig": st.binary(min_size=64, max_size=64),
    "software_version": st.text(printable, min_size=1, max_size=65),
    "protocol_version": st.integers(min_value=0, max_value=2**16),
}
MESSAGE_FIELDS = {
    1: ("token_proof", "node_name"),
    2: ("certificate", "ca_pubkey", "gossip_key"),
    3: ("reason_code", "message"),
    4: ("signature",),
    5: ("node_name",),
}
IDENTITY_FIELDS = (
    "certificate",
    "identity_pubkey",
    "protocol_version",
    "software_version",
    "static_sig",
    "version",
)


@st.composite
def near_valid_map(draw: st.DrawFn, names: tuple[str, ...], extra: dict[str, object]) -> bytes:
    """msgpack of a map with the right keys, mostly plausible values, sometimes broken."""
    fields: dict[str, object] = dict(extra)
    for name in names:
        broken = draw(st.integers(0, 5)) == 0
        fields[name] = draw(any_value if broken else FIELD_VALUES[name])
    mutation = draw(st.integers(0, 9))
    if mutation == 0 and fields:
        del fields[draw(st.sampled_from(sorted(fields)))]
    elif mutation == 1:
        fields[draw(st.text(max_size=6))] = draw(any_value)
    canonical = draw(st.integers(0, 4)) > 0
    items = sorted(fields.items()) if canonical else list(fields.items())
    return msgpack.packb(dict(items), use_bin_type=True)


@st.composite
def admission_message(draw: st.DrawFn) -> bytes:
    known = draw(st.integers(0, 9)) > 0
    if not known:
        return draw(near_valid_map((), {"type": draw(any_value)}))
    kind = draw(st.sampled_from(sorted(MESSAGE_FIELDS)))
    return draw(near_valid_map(MESSAGE_FIELDS[kind], {"type": kind}))


identity_payloads = st.one_of(
    st.binary(max_size=300), near_valid_map(IDENTITY_FIELDS, {}), st.just(b"")
)


@st.composite
def frame_plaintext(draw: st.DrawFn) -> bytes:
    """Mostly control frames holding near-valid admission messages; sometimes junk."""
    roll = draw(st.integers(0, 9))
    if roll < 7:
        return bytes((FrameType.CONTROL,)) + draw(admission_message())
    if roll < 9:
        return bytes((draw(st.integers(0, 255)),)) + draw(st.binary(max_size=40))
    return draw(st.binary(max_size=200))


frame_plaintexts = frame_plaintext()


def expected_message(kind: int) -> st.SearchStrategy[bytes | None]:
    """Nothing, or a near-valid control message of the type the node waits for next."""
    control = near_valid_map(MESSAGE_FIELDS[kind], {"type": kind})
    return st.one_of(st.none(), control.map(lambda m: bytes((FrameType.CONTROL,)) + m))


def send_in_pieces(data: bytes, sizes: list[int]) -> Callable[[RawPeer], Awaitable[None]]:
    """A script that sends ``data`` in pieces, letting the node read each one alone."""

    async def script(raw: RawPeer) -> None:
        offset, index = 0, 0
        while offset < len(data):
            size = sizes[index % len(sizes)]
            await raw.send(data[offset : offset + size])
            await trio.testing.wait_all_tasks_blocked()
            offset, index = offset + size, index + 1

    return script


# -- 1. raw bytes ------------------------------------------------------------------------


@FUZZ
@given(data=wire_bytes, sizes=piece_sizes, with_message_1=st.booleans())
def test_random_bytes_at_the_responder(
    listener: Listener, data: bytes, sizes: list[int], with_message_1: bool
) -> None:
    async def script(raw: RawPeer) -> None:
        if with_message_1:  # a genuine first message, then garbage as message 3
            await raw.write()
        await send_in_pieces(data, sizes)(raw)

    async def main() -> None:
        typed_failure(await listener.serve(script))

    run_trio(main)


@FUZZ
@given(data=wire_bytes, sizes=piece_sizes, joiner=st.booleans())
def test_random_bytes_at_the_initiator(data: bytes, sizes: list[int], joiner: bool) -> None:
    async def script(raw: RawPeer) -> None:
        await raw.receive_message()
        await send_in_pieces(data, sizes)(raw)

    initiator = joiner_side(CAROL, TOKEN, "carol") if joiner else member_side(ALICE, ALPHA.policy())

    async def main() -> None:
        with trio.fail_after(DEADLINE_S):
            a, _ = await run_pair(initiator, raw_side(script, initiator=False))
        typed_failure(a)

    run_trio(main)


# -- 2. random identity payloads -----------------------------------------------------------


@FUZZ
@given(payload=identity_payloads)
def test_random_identity_payload_at_the_responder(listener: Listener, payload: bytes) -> None:
    async def script(raw: RawPeer) -> None:
        await raw.run_noise(payload)

    async def main() -> None:
        failure = typed_failure(await listener.serve(script))
        assert failure.reason in {"malformed", "bad_signature"}

    run_trio(main)


@FUZZ
@given(payload=identity_payloads)
def test_random_identity_payload_at_the_initiator(payload: bytes) -> None:
    async def script(raw: RawPeer) -> None:
        await raw.read()
        await raw.write(payload)
        await raw.drain()

    async def main() -> None:
        with trio.fail_after(DEADLINE_S):
            a, _ = await run_pair(
                member_side(ALICE, ALPHA.policy()), raw_side(script, initiator=False)
            )
        assert typed_failure(a).reason in {"malformed", "bad_signature"}

    run_trio(main)


# -- 3. random frames after Noise ----------------------------------------------------------


@FUZZ
@given(
    as_member=st.booleans(),
    with_auth=st.booleans(),
    data=st.data(),
    plaintexts=st.lists(frame_plaintexts, max_size=4),
)
def test_random_frames_at_the_responder(
    listener: Listener,
    as_member: bool,
    with_auth: bool,
    data: st.DataObject,
    plaintexts: list[bytes],
) -> None:
    creds: Credentials = ALICE if as_member else CAROL
    # After Auth a member owes a Welcome, a node without certificate a JoinRequest.
    lead = data.draw(expected_message(5 if as_member else 1)) if with_auth else None

    async def script(raw: RawPeer) -> None:
        await raw.run_noise(raw.payload(creds))
        if with_auth:
            await raw.send_control(raw.auth(creds))
        for plaintext in [lead] * (lead is not None) + plaintexts:
            await raw.send_plaintext(plaintext)

    async def main() -> None:
        uses_before = [r.uses_left for r in listener.admin.tokens.records()]
        result = await listener.serve(script)
        if isinstance(result, AuthenticatedPeer):
            # Only a genuine member with a valid Auth may get in (it sent a Welcome).
            assert as_member and with_auth
            assert result.node_id == identity("alice").node_id
        else:
            typed_failure(result)
        assert [r.uses_left for r in listener.admin.tokens.records()] == uses_before

    run_trio(main)


# -- 4. random frames at a joiner ----------------------------------------------------------


@FUZZ
@given(
    with_auth=st.booleans(),
    grant=expected_message(2),
    plaintexts=st.lists(frame_plaintexts, max_size=3),
)
def test_random_frames_at_the_joiner(
    with_auth: bool, grant: bytes | None, plaintexts: list[bytes]
) -> None:
    async def script(raw: RawPeer) -> None:
        await raw.run_noise(raw.payload(BOB))
        if with_auth:
            await raw.send_control(raw.auth(BOB))
            if grant is not None:
                await raw.send_plaintext(grant)
        for plaintext in plaintexts:
            await raw.send_plaintext(plaintext)
        await raw.transport.send_eof()  # done talking; read until the joiner gives up
        await raw.drain()

    async def main() -> None:
        with trio.fail_after(DEADLINE_S):
            a, _ = await run_pair(
                joiner_side(CAROL, TOKEN, "carol"), raw_side(script, initiator=False)
            )
        assert not isinstance(a, Admission)
        typed_failure(a)

    run_trio(main)
