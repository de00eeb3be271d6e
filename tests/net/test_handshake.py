"""The daemon handshake over memory streams: who gets in, who is refused, and why.

Both sides run the real code (``noise_handshake`` then ``exchange_verdicts`` /
``respond`` / ``request_admission``); hostile peers are played by ``RawPeer``, which
sends exactly the bytes a test wants.  Timeouts run on trio's autojump clock.
"""

from __future__ import annotations

import struct
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest
import trio
import trio.testing

from crypto import binding, certs, tokens
from crypto.binding import AdmissionGrant, RefusalReason, Welcome
from crypto.certs import SignedCertificate
from crypto.noise import KeyPair
from crypto.noise.errors import DecryptError
from protocol.frames import (
    BULK_BYTES_MAX_DEFAULT,
    FrameType,
    encode_data,
    encode_end_of_stream,
    frame_length_prefix,
)
from tests.net.clusterkit import (
    NOW_S,
    SOFTWARE_VERSION,
    Cluster,
    Founder,
    RawPeer,
    Side,
    credentials,
    found_cluster,
    identity,
    joiner_side,
    member_side,
    raw_side,
    responder_side,
    run_pair,
    tapped,
    with_protocol_version,
)
from vramancer_node.cluster import ClusterStore
from vramancer_node.net.handshake import (
    HANDSHAKE_PAYLOAD_BYTES_MAX,
    Admission,
    AuthenticatedPeer,
    Credentials,
    HandshakeFailed,
    TrustPolicy,
)

ALPHA = Cluster.create("alpha")
BETA = Cluster.create("beta")
ALICE = ALPHA.member("alice", serial=11)
BOB = ALPHA.member("bob", serial=12)
TIMEOUT_S = 10.0


def refused_by_peer(result: object, reason: str) -> None:
    """``result`` is the initiator's HandshakeFailed carrying the peer's refusal reason."""
    assert isinstance(result, HandshakeFailed), result
    assert result.reason == "refused_by_peer"
    assert str(result).startswith(f"the peer refused: {reason}: "), str(result)


def failed(result: object, reason: str) -> HandshakeFailed:
    assert isinstance(result, HandshakeFailed), result
    assert result.reason == reason, f"{result.reason}: {result}"
    return result


@pytest.fixture
def founder(tmp_path: Path) -> Founder:
    return found_cluster(tmp_path)


# -- members -----------------------------------------------------------------------------


async def test_members_authenticate_each_other() -> None:
    a, b = await run_pair(member_side(ALICE, ALPHA.policy()), responder_side(BOB, ALPHA.policy()))
    assert isinstance(a, AuthenticatedPeer) and isinstance(b, AuthenticatedPeer)
    assert a.node_id == identity("bob").node_id
    assert b.node_id == identity("alice").node_id
    assert a.public_key == identity("bob").public_key
    assert a.certificate is not None and a.certificate.serial == 12
    assert b.certificate is not None and b.certificate.serial == 11
    assert a.certificate.node_name == "bob" and b.certificate.node_name == "alice"
    assert a.software_version == b.software_version == SOFTWARE_VERSION
    assert len(a.handshake_hash) == 32
    assert a.handshake_hash == b.handshake_hash


async def test_every_session_has_its_own_handshake_hash() -> None:
    first = await run_pair(member_side(ALICE, ALPHA.policy()), responder_side(BOB, ALPHA.policy()))
    second = await run_pair(member_side(ALICE, ALPHA.policy()), responder_side(BOB, ALPHA.policy()))
    hashes = {
        peer.handshake_hash for peer in (*first, *second) if isinstance(peer, AuthenticatedPeer)
    }
    assert len(hashes) == 2


def _forged(creds: Credentials) -> Credentials:
    signed = SignedCertificate.decode(creds.certificate or b"")
    forged = SignedCertificate(cert=signed.cert, signature=bytes(64))
    return replace(creds, certificate=forged.encode())


def _bad_member(case: str) -> tuple[Credentials, tuple[int, ...]]:
    """A node the alpha cluster must refuse, and the revocations alpha holds."""
    if case == "unknown_cluster":
        return BETA.member("mallory", serial=11), ()
    if case == "certificate_expired":
        return ALPHA.member("old", serial=13, now=NOW_S - 7200, ttl_s=3600), ()
    if case == "not_yet_valid":
        return ALPHA.member("early", serial=14, now=NOW_S + 7200), ()
    if case == "certificate_revoked":
        return ALPHA.member("gone", serial=15), (15,)
    if case == "another_key":
        # Mallory proves her own identity key but presents Alice's certificate.
        return credentials("mallory", ALICE.certificate), ()
    assert case == "forged_signature"
    return _forged(ALPHA.member("forger", serial=16)), ()


MEMBER_REFUSALS = {
    "unknown_cluster": "unknown_cluster",
    "certificate_expired": "certificate_expired",
    "not_yet_valid": "certificate_expired",
    "certificate_revoked": "certificate_revoked",
    "another_key": "bad_signature",
    "forged_signature": "bad_signature",
}


@pytest.mark.parametrize("case", sorted(MEMBER_REFUSALS))
@pytest.mark.parametrize("bad_side", ["initiator", "responder"])
async def test_members_refuse_bad_certificates_and_the_reason_arrives(
    case: str, bad_side: str
) -> None:
    bad, revoked = _bad_member(case)
    reason = MEMBER_REFUSALS[case]
    good_policy = ALPHA.policy(revoked=revoked)
    # The bad node judges by alpha's CA too, so it accepts the good one and only
    # the good node's verdict decides.
    if bad_side == "initiator":
        a, b = await run_pair(member_side(bad, ALPHA.policy()), responder_side(BOB, good_policy))
        refused, refuser = a, b
    else:
        a, b = await run_pair(member_side(ALICE, good_policy), responder_side(bad, ALPHA.policy()))
        refused, refuser = b, a
    failed(refuser, reason)
    refused_by_peer(refused, reason)


async def test_a_revocation_applies_from_the_next_handshake() -> None:
    before = await run_pair(member_side(ALICE, ALPHA.policy()), responder_side(BOB, ALPHA.policy()))
    assert all(isinstance(peer, AuthenticatedPeer) for peer in before)
    after = await run_pair(
        member_side(ALICE, ALPHA.policy()), responder_side(BOB, ALPHA.policy(revoked={11}))
    )
    failed(after[1], "certificate_revoked")
    refused_by_peer(after[0], "certificate_revoked")


async def test_protocol_version_mismatch_is_refused_by_both() -> None:
    newer = with_protocol_version(ALICE, 2)
    a, b = await run_pair(member_side(newer, ALPHA.policy()), responder_side(BOB, ALPHA.policy()))
    assert "protocol 1 != 2" in str(failed(a, "version_mismatch"))
    assert "protocol 2 != 1" in str(failed(b, "version_mismatch"))


# -- admission ---------------------------------------------------------------------------

CAROL = credentials("carol", None)
DAVE = credentials("dave", None)


async def _join(founder: Founder, joiner: Credentials, token: str, name: str, **admit: float):
    return await run_pair(
        joiner_side(joiner, token, name),
        responder_side(founder.creds, founder.policy, founder.admitter(**admit)),
    )


async def test_joiner_is_admitted_and_the_admin_state_is_persisted(
    founder: Founder, tmp_path: Path
) -> None:
    token, token_id = founder.token(uses=3)
    membership = founder.admin.membership
    a, b = await _join(founder, CAROL, token, "carol-box")
    assert isinstance(a, Admission) and isinstance(b, AuthenticatedPeer)
    # The joiner checked the grant: its certificate verifies under the token's CA.
    assert a.ca_pubkey == membership.ca_pubkey
    assert tokens.ca_matches(token, a.ca_pubkey)
    assert a.gossip_key == membership.gossip_keys[0]
    assert a.serial == 2
    assert a.roles == ("member",)
    cert = certs.verify(
        SignedCertificate.decode(a.certificate), a.ca_pubkey, now=NOW_S, revoked_serials=()
    )
    assert cert.node_pubkey == identity("carol").public_key
    assert cert.node_name == "carol-box"
    assert cert.serial == 2
    # Each side knows who the other is.
    assert a.peer.node_id == identity("founder").node_id
    assert a.peer.certificate is not None and a.peer.certificate.serial == 1
    assert b.node_id == identity("carol").node_id
    assert b.certificate is not None and b.certificate.serial == 2
    assert a.peer.handshake_hash == b.handshake_hash
    # The admin spent one use and allocated one serial, in memory and on disk.
    record = founder.admin.tokens.get(token_id)
    assert record is not None and record.uses_left == 2
    assert founder.admin.membership.next_serial == 3
    ca = founder.store.load_ca()
    assert ca is not None
    reloaded = ClusterStore(tmp_path)
    stored = reloaded.load_tokens(ca).get(token_id)
    assert stored is not None and stored.uses_left == 2
    stored_membership = reloaded.load()
    assert stored_membership is not None and stored_membership.next_serial == 3

    # The next joiner gets the next serial.
    a2, _ = await _join(founder, DAVE, token, "dave-box")
    assert isinstance(a2, Admission) and a2.serial == 3


async def test_an_admitted_joiner_then_authenticates_as_a_member(founder: Founder) -> None:
    token, _ = founder.token()
    admission, _ = await _join(founder, CAROL, token, "carol-box")
    assert isinstance(admission, Admission)
    carol = replace(CAROL, certificate=admission.certificate)
    carol_policy = TrustPolicy(ca_pubkey=admission.ca_pubkey, revoked_serials=(), now=lambda: NOW_S)
    a, b = await run_pair(
        member_side(carol, carol_policy), responder_side(founder.creds, founder.policy)
    )
    assert isinstance(a, AuthenticatedPeer) and isinstance(b, AuthenticatedPeer)
    assert b.certificate is not None and b.certificate.serial == admission.serial
    assert a.certificate is not None and a.certificate.serial == 1


def _uses_left(founder: Founder, token_id: str) -> int:
    record = founder.admin.tokens.get(token_id)
    assert record is not None
    return record.uses_left


async def test_a_token_past_its_use_count_is_refused(founder: Founder) -> None:
    token, token_id = founder.token(uses=1)
    first, _ = await _join(founder, CAROL, token, "carol-box")
    assert isinstance(first, Admission)
    a, b = await _join(founder, DAVE, token, "dave-box")
    failed(b, "token_exhausted")
    refused_by_peer(a, "token_exhausted")
    assert _uses_left(founder, token_id) == 0
    assert founder.admin.membership.next_serial == 3  # no serial spent on a refusal


async def test_an_admission_that_was_not_committed_gives_its_token_use_back(
    founder: Founder, tmp_path: Path
) -> None:
    # The daemon refunds when the admission entry does not commit (enrolment._admit).
    token, token_id = founder.token(uses=1)
    first, _ = await _join(founder, CAROL, token, "carol-box")
    assert isinstance(first, Admission) and _uses_left(founder, token_id) == 0
    founder.admin.refund(token_id)
    assert _uses_left(founder, token_id) == 1
    ca = founder.store.load_ca()
    assert ca is not None
    stored = ClusterStore(tmp_path).load_tokens(ca).get(token_id)
    assert stored is not None and stored.uses_left == 1  # persisted, not only in memory
    again, _ = await _join(founder, DAVE, token, "dave-box")
    assert isinstance(again, Admission)


async def test_a_token_past_its_ttl_is_refused(founder: Founder) -> None:
    token, token_id = founder.token(ttl_s=600)
    a, b = await _join(founder, CAROL, token, "carol-box", now=NOW_S + 600)
    failed(b, "token_expired")
    refused_by_peer(a, "token_expired")
    assert _uses_left(founder, token_id) == 1


async def test_an_unknown_token_is_refused(founder: Founder) -> None:
    unknown = tokens.format_token(founder.admin.tokens.ca_fingerprint, bytes(32))
    a, b = await _join(founder, CAROL, unknown, "carol-box")
    failed(b, "bad_token")
    refused_by_peer(a, "bad_token")


async def test_a_joiner_with_another_protocol_version_spends_no_use(founder: Founder) -> None:
    token, token_id = founder.token()
    a, b = await _join(founder, with_protocol_version(CAROL, 9), token, "carol-box")
    failed(b, "version_mismatch")
    refused_by_peer(a, "version_mismatch")
    assert _uses_left(founder, token_id) == 1


async def test_a_node_without_certificate_at_a_non_admin_gets_not_admin(founder: Founder) -> None:
    token, token_id = founder.token()
    a, b = await run_pair(
        joiner_side(CAROL, token, "carol-box"), responder_side(founder.creds, founder.policy, None)
    )
    failed(b, "not_admin")
    refused_by_peer(a, "not_admin")
    assert _uses_left(founder, token_id) == 1


def _rogue_admitter(rogue: Cluster, ca_pubkey: bytes):
    """An admin that ignores the token proof and certifies with ``rogue``'s key."""

    async def admit(request: binding.JoinRequest, peer: binding.IdentityPayload, h: bytes):
        cert = rogue.certificate(peer.identity_pubkey, name=request.node_name, serial=2)
        return AdmissionGrant(certificate=cert, ca_pubkey=ca_pubkey, gossip_key=bytes(32))

    return admit


async def test_a_joiner_refuses_a_responder_whose_ca_does_not_match_its_token(
    founder: Founder,
) -> None:
    token, _ = founder.token()
    rogue = BETA.member("rogue", serial=1)
    a, b = await run_pair(
        joiner_side(CAROL, token, "carol-box"),
        responder_side(rogue, BETA.policy(), _rogue_admitter(BETA, BETA.ca.pubkey)),
    )
    assert "rogue responder" in str(failed(a, "ca_mismatch"))
    assert isinstance(b, AuthenticatedPeer)  # the rogue believes it admitted carol


async def test_a_token_of_another_cluster_is_unknown_to_an_honest_admin(tmp_path: Path) -> None:
    ours = found_cluster(tmp_path / "ours")
    theirs = found_cluster(tmp_path / "theirs", label="other-founder")
    token, _ = ours.token()
    assert not tokens.ca_matches(token, theirs.admin.membership.ca_pubkey)
    a, b = await _join(theirs, CAROL, token, "carol-box")
    failed(b, "bad_token")
    refused_by_peer(a, "bad_token")


async def test_a_joiner_refuses_a_grant_that_does_not_verify(founder: Founder) -> None:
    # The rogue names the genuine CA (public) but cannot sign with it.
    token, _ = founder.token()
    real_ca = founder.admin.membership.ca_pubkey
    rogue = BETA.member("rogue", serial=1)
    a, _ = await run_pair(
        joiner_side(CAROL, token, "carol-box"),
        responder_side(rogue, BETA.policy(), _rogue_admitter(BETA, real_ca)),
    )
    failed(a, "rogue_responder")


async def test_a_joiner_refuses_a_grant_certifying_another_key(founder: Founder) -> None:
    # Even a responder holding the genuine CA key must certify the joiner's own key.
    token, _ = founder.token()
    ca = Cluster(founder.admin.ca)

    async def admit(request: binding.JoinRequest, peer: binding.IdentityPayload, h: bytes):
        cert = ca.certificate(identity("mallory").public_key, name=request.node_name, serial=2)
        return AdmissionGrant(certificate=cert, ca_pubkey=ca.ca.pubkey, gossip_key=bytes(32))

    a, _ = await run_pair(
        joiner_side(CAROL, token, "carol-box"),
        responder_side(founder.creds, founder.policy, admit),
    )
    assert "for another key" in str(failed(a, "rogue_responder"))


async def test_a_node_without_certificate_that_skips_the_join_request(founder: Founder) -> None:
    async def script(raw: RawPeer) -> object:
        await raw.run_noise(raw.payload(CAROL))
        await raw.send_control(raw.auth(CAROL))
        await raw.send_control(Welcome(node_name="carol").encode())
        auth = await raw.receive_plaintext()
        refusal = await raw.receive_plaintext()
        assert auth is not None and refusal is not None
        return binding.decode_admission_message(refusal[1:])

    a, b = await run_pair(
        raw_side(script, initiator=True),
        responder_side(founder.creds, founder.policy, founder.admitter()),
    )
    assert isinstance(a, binding.Refusal) and a.reason_code is RefusalReason.NOT_ADMITTED
    failed(b, "not_admitted")


# -- bad input before and during the Noise handshake -------------------------------------


def framed(*messages: bytes) -> bytes:
    return b"".join(frame_length_prefix(len(m)) + m for m in messages)


def sends(data: bytes) -> Callable[[RawPeer], Awaitable[None]]:
    async def script(raw: RawPeer) -> None:
        await raw.send(data)

    return script


async def _respond_to(script: Callable[[RawPeer], Awaitable[object]]) -> tuple[object, object]:
    return await run_pair(raw_side(script, initiator=True), responder_side(BOB, ALPHA.policy()))


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        (b"GET / HTTP/1.1\r\nHost: node\r\n\r\n", "connection_lost"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40), "connection_lost"),
        (b"\x00\x00", "malformed"),
        (b"\x00\x00" + framed(bytes(32)), "malformed"),
        (framed(b"hello"), "noise"),
        (framed(bytes(range(32)) + b"junk"), "malformed"),
        (framed(bytes(32)), "noise"),  # a low-order ephemeral: refused, not used
        (framed(bytes(range(32)), b"\x01" * 48), "noise"),
        (framed(b"\xff" * 65535), "malformed"),
    ],
    ids=[
        "http",
        "tls-hello",
        "zero-length",
        "zero-length-then-message",
        "short-message-1",
        "message-1-with-payload",
        "low-order-ephemeral",
        "garbage-message-3",
        "oversized-message-1",
    ],
)
async def test_garbage_before_the_handshake(garbage: bytes, reason: str) -> None:
    _, b = await _respond_to(sends(garbage))
    failed(b, reason)


async def test_garbage_before_a_valid_handshake_is_not_skipped() -> None:
    async def script(raw: RawPeer) -> bytes | None:
        await raw.send(framed(b"\x00" * 7))
        await raw.write()
        return await raw.receive_message()

    a, b = await _respond_to(script)
    failed(b, "noise")
    assert a is None  # no message 2: the node closed instead of resynchronising


@pytest.mark.parametrize(
    "cut",
    ["message-1-prefix", "message-1-body", "message-3-body", "auth-body"],
)
async def test_truncated_handshake_messages_lose_the_connection(cut: str) -> None:
    async def script(raw: RawPeer) -> None:
        message_1 = raw.hs.write_message(b"")
        if cut == "message-1-prefix":
            await raw.send(frame_length_prefix(len(message_1))[:1])
            return
        if cut == "message-1-body":
            await raw.send((frame_length_prefix(32) + message_1)[:20])
            return
        await raw.send_message(message_1)
        raw.hs.read_message(await raw.receive_message() or b"")
        message_3 = raw.hs.write_message(raw.payload(ALICE))
        if cut == "message-3-body":
            await raw.send((frame_length_prefix(len(message_3)) + message_3)[:-1])
            return
        await raw.send_message(message_3)
        raw.ciphers = raw.hs.split()
        sealed = raw.ciphers[0].encrypt_with_ad(b"", b"\x02" + raw.auth(ALICE))
        await raw.send((frame_length_prefix(len(sealed)) + sealed)[:-5])

    _, b = await _respond_to(script)
    failed(b, "connection_lost")


async def test_message_3_cut_and_reframed_fails_noise() -> None:
    async def script(raw: RawPeer) -> None:
        await raw.write()
        await raw.read()
        message_3 = raw.hs.write_message(raw.payload(ALICE))
        await raw.send_message(message_3[: len(message_3) // 2])

    _, b = await _respond_to(script)
    failed(b, "noise")


async def test_an_oversized_identity_payload_is_refused() -> None:
    async def script(raw: RawPeer) -> None:
        await raw.run_noise(b"\x00" * (HANDSHAKE_PAYLOAD_BYTES_MAX + 1))

    _, b = await _respond_to(script)
    assert "too large" in str(failed(b, "malformed"))


@pytest.mark.parametrize(
    "payload",
    [b"", b"\xc1", b"\x80", bytes(binding.IDENTITY_PAYLOAD_BYTES_MAX + 1)],
    ids=["empty", "not-msgpack", "empty-map", "over-the-binding-limit"],
)
async def test_a_malformed_identity_payload_is_malformed(payload: bytes) -> None:
    async def script(raw: RawPeer) -> None:
        await raw.run_noise(payload)

    _, b = await _respond_to(script)
    failed(b, "malformed")


async def test_an_identity_that_did_not_sign_this_static_key_is_refused() -> None:
    async def script(raw: RawPeer) -> None:
        other_static = KeyPair.from_private(b"\x01" * 32)
        payload = binding.encode_identity_payload(
            ALICE.identity.signing_key,
            noise_static_pub=other_static.public,
            certificate=ALICE.certificate,
            software_version=SOFTWARE_VERSION,
            protocol_version=1,
        )
        await raw.run_noise(payload)

    _, b = await _respond_to(script)
    assert "did not sign the Noise static key" in str(failed(b, "bad_signature"))


# -- replay and wrong prologue -------------------------------------------------------------


async def test_a_replayed_initiator_transcript_is_refused() -> None:
    tap: list = []
    first = await run_pair(
        tapped(member_side(ALICE, ALPHA.policy()), tap), responder_side(BOB, ALPHA.policy())
    )
    assert all(isinstance(peer, AuthenticatedPeer) for peer in first)
    recorded = bytes(tap[0].sent)  # messages 1 and 3, Auth, Welcome
    _, b = await _respond_to(sends(recorded))
    failed(b, "noise")


async def test_a_replayed_responder_transcript_is_refused() -> None:
    tap: list = []
    await run_pair(
        member_side(ALICE, ALPHA.policy()), tapped(responder_side(BOB, ALPHA.policy()), tap)
    )
    recorded = bytes(tap[0].sent)  # message 2, Auth, Welcome

    async def replay(raw: RawPeer) -> None:
        await raw.receive_message()
        await raw.send(recorded)

    a, _ = await run_pair(member_side(ALICE, ALPHA.policy()), raw_side(replay, initiator=False))
    failed(a, "noise")


async def test_a_replayed_challenge_response_is_refused() -> None:
    old = await run_pair(member_side(ALICE, ALPHA.policy()), responder_side(BOB, ALPHA.policy()))
    assert isinstance(old[1], AuthenticatedPeer)
    old_h = old[1].handshake_hash

    async def script(raw: RawPeer) -> None:
        await raw.run_noise(raw.payload(ALICE))
        await raw.send_control(raw.auth(ALICE, handshake_hash=old_h))

    _, b = await _respond_to(script)
    assert "challenge-response" in str(failed(b, "bad_signature"))


async def test_a_challenge_response_by_another_key_is_refused() -> None:
    async def script(raw: RawPeer) -> None:
        await raw.run_noise(raw.payload(ALICE))
        await raw.send_control(raw.auth(BOB))

    _, b = await _respond_to(script)
    failed(b, "bad_signature")


WRONG_PROLOGUE = b"vramancer/noise/2"


async def test_a_responder_with_another_prologue_fails_the_initiator() -> None:
    async def other_version(transport: trio.abc.HalfCloseableStream) -> None:
        raw = RawPeer(transport, initiator=False, prologue=WRONG_PROLOGUE)
        await raw.read()
        await raw.write(raw.payload(BOB))
        await raw.drain()

    a, _ = await run_pair(member_side(ALICE, ALPHA.policy()), other_version)
    assert "wrong protocol version" in str(failed(a, "noise"))


async def test_an_initiator_with_another_prologue_cannot_finish() -> None:
    async def other_version(transport: trio.abc.HalfCloseableStream) -> str:
        raw = RawPeer(transport, initiator=True, prologue=WRONG_PROLOGUE)
        await raw.write()
        with pytest.raises(DecryptError):  # message 2 does not open under another prologue
            await raw.read()
        return "gave up"

    a, b = await run_pair(other_version, responder_side(BOB, ALPHA.policy()))
    assert a == "gave up"
    failed(b, "connection_lost")


# -- bad frames after Noise ------------------------------------------------------------------


def after_noise(
    *plaintexts: bytes, creds: Credentials = ALICE
) -> Callable[[RawPeer], Awaitable[None]]:
    async def script(raw: RawPeer) -> None:
        await raw.run_noise(raw.payload(creds))
        for plaintext in plaintexts:
            await raw.send_plaintext(plaintext)

    return script


@pytest.mark.parametrize(
    ("plaintexts", "match"),
    [
        ([encode_data(b"hi")], "expected a control frame, got DataFrame"),
        ([encode_end_of_stream()], "expected a control frame, got EndOfStream"),
        ([b""], "empty frame"),
        ([b"\x09"], "unknown frame type"),
        ([b"\x02" + Welcome(node_name="x").encode()], "expected Auth, got Welcome"),
        ([b"\x02\xc1"], "bad control message"),
        ([b"\x02" + bytes(60000)], "bad control message"),
        (
            [
                bytes((FrameType.BULK,)) + struct.pack(">QBH", BULK_BYTES_MAX_DEFAULT, 1, 0),
                b"short chunk",
            ],
            "BULK chunk of 11 bytes",
        ),
    ],
    ids=[
        "data",
        "end-of-stream",
        "empty",
        "unknown-type",
        "welcome-not-auth",
        "not-msgpack",
        "oversized-control",
        "bulk-4GiB",
    ],
)
async def test_bad_frames_instead_of_auth(plaintexts: list[bytes], match: str) -> None:
    tracemalloc.start()
    try:
        _, b = await _respond_to(after_noise(*plaintexts))
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert match in str(failed(b, "malformed"))
    assert peak_bytes < 32 << 20  # announcing 4 GiB reserves nothing


async def test_a_tampered_frame_is_refused() -> None:
    async def script(raw: RawPeer) -> None:
        await raw.run_noise(raw.payload(ALICE))
        assert raw.ciphers is not None
        sealed = bytearray(raw.ciphers[0].encrypt_with_ad(b"", b"\x02" + raw.auth(ALICE)))
        sealed[5] ^= 1
        await raw.send_message(bytes(sealed))

    _, b = await _respond_to(script)
    failed(b, "malformed")


async def test_a_peer_that_leaves_after_noise_is_connection_lost() -> None:
    _, b = await _respond_to(after_noise())
    failed(b, "connection_lost")


# -- stalls ------------------------------------------------------------------------------


async def _stall_nothing(raw: RawPeer) -> None:
    pass


async def _stall_half_prefix(raw: RawPeer) -> None:
    await raw.send(b"\x00")


async def _stall_half_message_1(raw: RawPeer) -> None:
    await raw.send((frame_length_prefix(32) + raw.hs.write_message(b""))[:18])


async def _stall_after_message_1(raw: RawPeer) -> None:
    await raw.write()
    await raw.read()


async def _stall_after_noise(raw: RawPeer) -> None:
    await raw.run_noise(raw.payload(ALICE))


async def _stall_after_auth(raw: RawPeer) -> None:
    await raw.run_noise(raw.payload(ALICE))
    await raw.send_control(raw.auth(ALICE))


async def _stall_joiner_after_auth(raw: RawPeer) -> None:
    await raw.run_noise(raw.payload(CAROL))
    await raw.send_control(raw.auth(CAROL))


STALLS = {
    "nothing": _stall_nothing,
    "half-prefix": _stall_half_prefix,
    "half-message-1": _stall_half_message_1,
    "after-message-1": _stall_after_message_1,
    "after-noise": _stall_after_noise,
    "after-auth": _stall_after_auth,
    "joiner-after-auth": _stall_joiner_after_auth,
}


async def _times_out(side: Side, transport: trio.abc.HalfCloseableStream) -> None:
    start = trio.current_time()
    with pytest.raises(trio.TooSlowError), trio.fail_after(TIMEOUT_S):
        await side(transport)
    assert trio.current_time() - start == pytest.approx(TIMEOUT_S)


@pytest.mark.parametrize("stage", sorted(STALLS))
async def test_a_stalled_initiator_times_out_and_is_let_go(
    stage: str, autojump_clock: trio.testing.MockClock
) -> None:
    client, server = trio.testing.memory_stream_pair()
    released: list[bytes] = []

    async def stalled_peer() -> None:
        raw = RawPeer(client, initiator=True)
        await STALLS[stage](raw)
        released.append(await raw.drain())  # returns once the node closed the transport

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stalled_peer)
        await _times_out(responder_side(BOB, ALPHA.policy(), None), server)
        await server.aclose()
    assert len(released) == 1


async def _responder_stalls_after_message_1(raw: RawPeer) -> None:
    await raw.read()


async def _responder_stalls_after_noise(raw: RawPeer) -> None:
    await raw.run_noise(raw.payload(BOB))


async def _responder_stalls_before_the_grant(raw: RawPeer) -> None:
    await raw.run_noise(raw.payload(BOB))
    await raw.send_control(raw.auth(BOB))
    await raw.receive_plaintext()  # Auth
    await raw.receive_plaintext()  # JoinRequest


@pytest.mark.parametrize(
    "stall",
    [
        _responder_stalls_after_message_1,
        _responder_stalls_after_noise,
        _responder_stalls_before_the_grant,
    ],
    ids=["after-message-1", "after-noise", "before-the-grant"],
)
async def test_a_stalled_responder_times_out_the_initiator(
    stall: Callable[[RawPeer], Awaitable[None]], autojump_clock: trio.testing.MockClock
) -> None:
    client, server = trio.testing.memory_stream_pair()

    async def stalled_peer() -> None:
        raw = RawPeer(server, initiator=False)
        await stall(raw)
        await raw.drain()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stalled_peer)
        await _times_out(joiner_side(CAROL, "vrm1." + "a" * 52 + "." + "a" * 52, "carol"), client)
        await client.aclose()
