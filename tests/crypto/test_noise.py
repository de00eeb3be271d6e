"""crypto.noise: handshake, transport and failure behaviour (pure, synchronous).

The conformance vectors live in ``test_noise_vectors.py``; this file checks the
claims the vectors cannot: failures, limits, misuse, nonce rules and rekey.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator

import nacl.bindings
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crypto.noise
from crypto.noise import (
    BLAKE2B,
    BLAKE2S,
    CHACHAPOLY,
    MAX_MESSAGE_BYTES,
    MAX_NONCE,
    SHA256,
    SHA512,
    TAG_BYTES,
    CipherState,
    DecryptError,
    HandshakeError,
    HandshakeState,
    KeyPair,
    LocalProtocolError,
    LowOrderPointError,
    MessageTooLongError,
    NoiseError,
    NonceExhaustedError,
    RemoteProtocolError,
    UnsupportedProtocolError,
    pattern_by_name,
)
from crypto.noise.dh import x25519
from crypto.noise.patterns import BASE_PATTERNS, PATTERN_SOURCES, Token, parse_pattern

PROLOGUE = b"vramancer/noise/1"
FUNDAMENTAL = ("NN", "NK", "NX", "XN", "XK", "XX", "KN", "KK", "KX", "IN", "IK", "IX")
ONE_WAY = ("N", "K", "X")
DEFERRED = tuple(name for name in PATTERN_SOURCES if "1" in name)
PSK_PATTERNS = ("NNpsk0", "NNpsk2", "XXpsk3", "IKpsk1", "KKpsk0+psk2", "NXpsk0+psk1+psk2")


def _keypair(seed: int) -> KeyPair:
    # Deterministic keys: a test failure reproduces byte for byte.
    return KeyPair.from_private(hashlib.sha256(b"test key %d" % seed).digest())


def _ephemeral_source(first_seed: int) -> Callable[[], KeyPair]:
    seeds = itertools.count(first_seed)
    return lambda: _keypair(next(seeds))


def _pair(
    pattern: str, prologue: bytes = PROLOGUE, resp_prologue: bytes | None = None
) -> tuple[HandshakeState, HandshakeState]:
    """An initiator and a responder for *pattern*, each given what the pattern needs."""
    parsed = pattern_by_name(pattern)
    init_s, resp_s = _keypair(1), _keypair(2)
    psks = [bytes([index]) * 32 for index in range(parsed.psk_count)]
    init = HandshakeState.initialize(
        pattern=pattern,
        initiator=True,
        prologue=prologue,
        s=init_s,
        rs=resp_s.public if Token.S in parsed.responder_pre_message else None,
        psks=psks,
        generate_keypair=_ephemeral_source(100),
    )
    resp = HandshakeState.initialize(
        pattern=pattern,
        initiator=False,
        prologue=prologue if resp_prologue is None else resp_prologue,
        s=resp_s,
        rs=init_s.public if Token.S in parsed.initiator_pre_message else None,
        psks=psks,
        generate_keypair=_ephemeral_source(200),
    )
    return init, resp


def _turns(init: HandshakeState, resp: HandshakeState) -> Iterator[tuple[HandshakeState, ...]]:
    """Yield (writer, reader) for each remaining handshake message."""
    while not init.complete:
        yield (init, resp) if init.is_my_turn else (resp, init)


def _handshake(init: HandshakeState, resp: HandshakeState) -> list[bytes]:
    received = []
    for index, (writer, reader) in enumerate(_turns(init, resp)):
        payload = b"payload %d" % index
        received.append(reader.read_message(writer.write_message(payload)))
        assert received[-1] == payload
    return received


def _transport(pattern: str = "XX") -> tuple[CipherState, CipherState, CipherState, CipherState]:
    """(init_send, init_recv, resp_send, resp_recv) after a completed handshake."""
    init, resp = _pair(pattern)
    _handshake(init, resp)
    return (*init.split(), *resp.split())


# -- handshakes -------------------------------------------------------------------------


def test_xx_round_trip_learns_statics_and_agrees_on_hash() -> None:
    init, resp = _pair("XX")
    assert (init.remote_static, resp.remote_static) == (None, None)
    assert resp.read_message(init.write_message(b"hello")) == b"hello"
    message2 = resp.write_message(b"responder identity")
    assert init.read_message(message2) == b"responder identity"
    assert init.remote_static == _keypair(2).public
    assert _keypair(2).public not in message2  # the static key travels encrypted
    assert (init.complete, resp.complete) == (False, False)
    assert resp.read_message(init.write_message(b"initiator identity")) == b"initiator identity"
    assert resp.remote_static == _keypair(1).public
    assert (init.complete, resp.complete) == (True, True)
    assert init.handshake_hash == resp.handshake_hash
    assert len(init.handshake_hash) == SHA256.hashlen
    init_send, init_recv = init.split()
    resp_send, resp_recv = resp.split()
    assert resp_recv.decrypt_with_ad(b"", init_send.encrypt_with_ad(b"", b"ping")) == b"ping"
    assert init_recv.decrypt_with_ad(b"", resp_send.encrypt_with_ad(b"", b"pong")) == b"pong"
    assert init.handshake_hash == resp.handshake_hash  # still readable after split


def test_protocol_name_alone_selects_the_same_handshake() -> None:
    by_pattern = HandshakeState.initialize(pattern="XX", initiator=True, s=_keypair(1))
    by_name = HandshakeState.initialize(
        initiator=True, s=_keypair(1), protocol_name="Noise_XX_25519_ChaChaPoly_SHA256"
    )
    assert by_pattern.protocol == by_name.protocol
    assert by_pattern.handshake_hash == by_name.handshake_hash


@pytest.mark.parametrize("pattern", FUNDAMENTAL + ONE_WAY + DEFERRED + PSK_PATTERNS)
@pytest.mark.parametrize("hash_name", ["SHA256", "SHA512", "BLAKE2s", "BLAKE2b"])
def test_every_pattern_completes_and_transports(pattern: str, hash_name: str) -> None:
    parsed = pattern_by_name(pattern)
    name = f"Noise_{pattern}_25519_ChaChaPoly_{hash_name}"
    init = HandshakeState.initialize(
        initiator=True,
        protocol_name=name,
        prologue=PROLOGUE,
        s=_keypair(1),
        rs=_keypair(2).public if Token.S in parsed.responder_pre_message else None,
        psks=[bytes([i]) * 32 for i in range(parsed.psk_count)],
    )
    resp = HandshakeState.initialize(
        initiator=False,
        protocol_name=name,
        prologue=PROLOGUE,
        s=_keypair(2),
        rs=_keypair(1).public if Token.S in parsed.initiator_pre_message else None,
        psks=[bytes([i]) * 32 for i in range(parsed.psk_count)],
    )
    assert len(_handshake(init, resp)) == len(parsed.messages)
    assert init.handshake_hash == resp.handshake_hash
    init_send, init_recv = init.split()
    resp_send, resp_recv = resp.split()
    for round_ in range(3):
        assert resp_recv.decrypt_with_ad(b"ad", init_send.encrypt_with_ad(b"ad", b"%d" % round_))
        if not parsed.one_way:
            assert init_recv.decrypt_with_ad(b"", resp_send.encrypt_with_ad(b"", b"x")) == b"x"


def test_injected_ephemerals_make_handshakes_reproducible() -> None:
    first, second = _pair("XX"), _pair("XX")
    assert _handshake(*first) == _handshake(*second)
    assert first[0].handshake_hash == second[0].handshake_hash


def test_default_ephemerals_are_fresh_each_time() -> None:
    a = HandshakeState.initialize(pattern="NN", initiator=True)
    b = HandshakeState.initialize(pattern="NN", initiator=True)
    assert a.write_message()[:32] != b.write_message()[:32]


def test_prologue_mismatch_fails_the_handshake() -> None:
    init, resp = _pair("XX", resp_prologue=b"vramancer/noise/2")
    resp.read_message(init.write_message())  # message 1 is not encrypted yet
    with pytest.raises(DecryptError):
        init.read_message(resp.write_message(b"identity"))
    with pytest.raises(LocalProtocolError, match="already failed"):
        init.write_message()


@pytest.mark.parametrize("position", [0, 40, -1])
def test_tampered_handshake_message_fails(position: int) -> None:
    init, resp = _pair("XX")
    resp.read_message(init.write_message())
    message = bytearray(resp.write_message(b"identity"))
    message[position] ^= 0x01
    with pytest.raises(RemoteProtocolError):
        init.read_message(bytes(message))
    with pytest.raises(LocalProtocolError):
        init.split()


def test_truncated_handshake_message_is_a_handshake_error() -> None:
    init, resp = _pair("XX")
    with pytest.raises(HandshakeError, match="too short"):
        resp.read_message(init.write_message()[:31])


def test_oversized_handshake_message_is_a_handshake_error() -> None:
    _, resp = _pair("XX")
    with pytest.raises(HandshakeError, match="exceeds"):
        resp.read_message(bytes(MAX_MESSAGE_BYTES + 1))


# -- transport --------------------------------------------------------------------------


def test_failed_decrypt_does_not_advance_the_nonce() -> None:
    init_send, _, _, resp_recv = _transport()
    good = init_send.encrypt_with_ad(b"", b"first")
    forged = bytes([good[0] ^ 0x80]) + good[1:]
    with pytest.raises(DecryptError):
        resp_recv.decrypt_with_ad(b"", forged)
    with pytest.raises(DecryptError):
        resp_recv.decrypt_with_ad(b"other ad", good)
    with pytest.raises(DecryptError, match="shorter than a tag"):
        resp_recv.decrypt_with_ad(b"", good[: TAG_BYTES - 1])
    assert resp_recv.n == 0
    assert resp_recv.decrypt_with_ad(b"", good) == b"first"
    assert resp_recv.n == 1
    assert resp_recv.decrypt_with_ad(b"", init_send.encrypt_with_ad(b"", b"second")) == b"second"


def test_replayed_message_is_refused() -> None:
    init_send, _, _, resp_recv = _transport()
    ciphertext = init_send.encrypt_with_ad(b"", b"once")
    resp_recv.decrypt_with_ad(b"", ciphertext)
    with pytest.raises(DecryptError):
        resp_recv.decrypt_with_ad(b"", ciphertext)


def test_nonce_exhaustion_ends_the_session() -> None:
    init_send, _, _, resp_recv = _transport()
    init_send.set_nonce(MAX_NONCE - 1)
    resp_recv.set_nonce(MAX_NONCE - 1)
    last = init_send.encrypt_with_ad(b"", b"last message")
    assert init_send.n == MAX_NONCE
    with pytest.raises(NonceExhaustedError):
        init_send.encrypt_with_ad(b"", b"one too many")
    with pytest.raises(NonceExhaustedError):  # and it stays that way
        init_send.encrypt_with_ad(b"", b"")
    assert resp_recv.decrypt_with_ad(b"", last) == b"last message"
    with pytest.raises(NonceExhaustedError):
        resp_recv.decrypt_with_ad(b"", last)


def test_rekey_matches_the_spec_formula_and_keeps_the_nonce() -> None:
    key = bytes(range(32))
    state = CipherState(CHACHAPOLY, key)
    state.set_nonce(7)
    state.rekey()
    assert state.n == 7
    max_nonce = b"\x00" * 4 + MAX_NONCE.to_bytes(8, "little")
    new_key = nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(
        bytes(32), b"", max_nonce, key
    )[:32]
    nonce7 = b"\x00" * 4 + (7).to_bytes(8, "little")
    expected = nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(b"pt", b"", nonce7, new_key)
    assert state.encrypt_with_ad(b"", b"pt") == expected


def test_rekey_changes_keys_and_both_sides_stay_in_sync() -> None:
    init_send, init_recv, resp_send, resp_recv = _transport()
    init_send.rekey()
    ciphertext = init_send.encrypt_with_ad(b"", b"after rekey")
    with pytest.raises(DecryptError):  # the old key no longer works
        resp_recv.decrypt_with_ad(b"", ciphertext)
    resp_recv.rekey()
    assert resp_recv.decrypt_with_ad(b"", ciphertext) == b"after rekey"
    resp_send.rekey()
    init_recv.rekey()
    for index in range(3):
        message = b"message %d" % index
        assert init_recv.decrypt_with_ad(b"", resp_send.encrypt_with_ad(b"", message)) == message
        assert resp_recv.decrypt_with_ad(b"", init_send.encrypt_with_ad(b"", message)) == message


def test_rekey_without_a_key_is_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        CipherState(CHACHAPOLY).rekey()


def test_transport_message_limit() -> None:
    init_send, _, _, resp_recv = _transport()
    largest = b"\xaa" * (MAX_MESSAGE_BYTES - TAG_BYTES)
    with pytest.raises(MessageTooLongError):
        init_send.encrypt_with_ad(b"", largest + b"\xaa")
    assert init_send.n == 0
    ciphertext = init_send.encrypt_with_ad(b"", largest)
    assert len(ciphertext) == MAX_MESSAGE_BYTES
    assert resp_recv.decrypt_with_ad(b"", ciphertext) == largest
    with pytest.raises(DecryptError, match="exceeds"):
        resp_recv.decrypt_with_ad(b"", ciphertext + b"\x00")


@pytest.mark.parametrize("pattern", ["NN", "XX", "IK", "KK", "X1X1", "NNpsk0", "XXpsk3", "N"])
def test_handshake_messages_reach_exactly_the_limit(pattern: str) -> None:
    init, resp = _pair(pattern)
    # A twin pair with the same keys, run in lockstep with empty payloads, measures
    # each message's overhead (keys, tags) without peeking into the state.
    twin_init, twin_resp = _pair(pattern)
    for (writer, reader), (twin_writer, twin_reader) in zip(
        _turns(init, resp), _turns(twin_init, twin_resp), strict=True
    ):
        empty = twin_writer.write_message()
        twin_reader.read_message(empty)
        largest = b"\x55" * (MAX_MESSAGE_BYTES - len(empty))
        with pytest.raises(MessageTooLongError):
            writer.write_message(largest + b"\x55")
        message = writer.write_message(largest)  # the refusal left the state usable
        assert len(message) == MAX_MESSAGE_BYTES
        assert reader.read_message(message) == largest
    assert init.complete and twin_init.complete


# -- low-order points -------------------------------------------------------------------

# X25519 public keys of small order, as in libsodium's blacklist: u=0 (order 4), u=1
# (order 1), the two order-8 points, and the encodings p-1 (order 2), p (= 0) and
# p+1 (= 1).  Each turns any private key into an all-zero shared secret.
LOW_ORDER_POINTS = [
    bytes(32),
    bytes([1]) + bytes(31),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("ec" + "ff" * 30 + "7f"),
    bytes.fromhex("ed" + "ff" * 30 + "7f"),
    bytes.fromhex("ee" + "ff" * 30 + "7f"),
]


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda point: point.hex()[:8])
def test_low_order_points_are_refused(point: bytes) -> None:
    for seed in range(4):
        with pytest.raises(LowOrderPointError):
            x25519(_keypair(seed).private, point)


def test_low_order_ephemeral_in_a_handshake_is_refused() -> None:
    init, resp = _pair("NN")
    resp.read_message(init.write_message())
    message = resp.write_message()
    with pytest.raises(LowOrderPointError):
        init.read_message(LOW_ORDER_POINTS[2] + message[32:])
    assert issubclass(LowOrderPointError, RemoteProtocolError)


def test_x25519_matches_rfc7748() -> None:
    alice = KeyPair.from_private(
        bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    )
    bob_public = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    assert alice.public.hex() == (
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    )
    assert x25519(alice.private, bob_public).hex() == (
        "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    )
    assert alice.private.hex() not in repr(alice) and str(alice.private) not in repr(alice)


# -- misuse -----------------------------------------------------------------------------


def test_writing_out_of_turn_is_local_misuse() -> None:
    init, resp = _pair("XX")
    with pytest.raises(LocalProtocolError, match="not our turn"):
        resp.write_message(b"too early")
    with pytest.raises(LocalProtocolError, match="not our turn"):
        init.read_message(b"")
    with pytest.raises(LocalProtocolError, match="completed"):
        init.split()
    resp.read_message(init.write_message())  # misuse did not disturb the state
    with pytest.raises(LocalProtocolError, match="not our turn"):
        init.write_message()


def test_after_completion_only_split_works_and_only_once() -> None:
    init, resp = _pair("NN")
    _handshake(init, resp)
    with pytest.raises(LocalProtocolError, match="complete"):
        init.write_message()
    init.split()
    with pytest.raises(LocalProtocolError, match="already"):
        init.split()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pattern": "XX"}, "static key pair s"),
        ({"pattern": "IK", "s": _keypair(1)}, "remote public key rs"),
        ({"pattern": "IK", "s": _keypair(1), "rs": b"short"}, "must be 32 bytes"),
        ({"pattern": "NNpsk0"}, "needs 1 PSKs"),
        ({"pattern": "NNpsk0", "psks": [b"short"]}, "32 bytes"),
        ({"pattern": "NN", "protocol_name": "Noise_XX_25519_ChaChaPoly_SHA256"}, "disagrees"),
        ({}, "pattern, a protocol_name"),
    ],
)
def test_bad_initialization_is_local_misuse(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(LocalProtocolError, match=match):
        HandshakeState.initialize(initiator=True, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name",
    [
        "Noise_XX_448_ChaChaPoly_SHA256",
        "Noise_XX_25519_AESGCM_SHA256",
        "Noise_XX_25519_ChaChaPoly_SHA3",
        "Noise_XXfallback_25519_ChaChaPoly_SHA256",
        "Noise_ZZ_25519_ChaChaPoly_SHA256",
        "Noise_XX_25519_ChaChaPoly",
        "Noisy_XX_25519_ChaChaPoly_SHA256",
    ],
)
def test_unsupported_protocols_are_named(name: str) -> None:
    with pytest.raises(UnsupportedProtocolError):
        HandshakeState.initialize(initiator=True, protocol_name=name, s=_keypair(1))


def test_error_tree_says_whose_fault_it_is() -> None:
    for local in (UnsupportedProtocolError, MessageTooLongError):
        assert issubclass(local, LocalProtocolError)
    for remote in (HandshakeError, DecryptError, LowOrderPointError):
        assert issubclass(remote, RemoteProtocolError)
    for error in (LocalProtocolError, RemoteProtocolError, NonceExhaustedError):
        assert issubclass(error, NoiseError)
    assert not issubclass(NonceExhaustedError, (LocalProtocolError, RemoteProtocolError))


# -- patterns and primitives ------------------------------------------------------------


def test_pattern_tables_cover_the_spec() -> None:
    assert set(FUNDAMENTAL + ONE_WAY) <= set(BASE_PATTERNS)
    assert len(DEFERRED) == 23
    xx = BASE_PATTERNS["XX"]
    assert xx.messages == ((Token.E,), (Token.E, Token.EE, Token.S, Token.ES), (Token.S, Token.SE))
    ik = BASE_PATTERNS["IK"]
    assert ik.responder_pre_message == (Token.S,) and ik.initiator_pre_message == ()
    assert pattern_by_name("XXpsk0+psk3").messages[0][0] is Token.PSK
    assert pattern_by_name("XXpsk0+psk3").messages[2][-1] is Token.PSK


@pytest.mark.parametrize(
    ("source", "match"),
    [
        ("-> e\n<- e, ee, es", "before its keys"),
        ("-> e\n<- e, ee\n-> e", "sent twice"),
        ("<- e\n-> e", "must start with ->"),
        ("-> e, zz", "unknown token"),
        ("-> ee\n...\n-> e", "bad pre-message"),
    ],
)
def test_malformed_patterns_are_rejected(source: str, match: str) -> None:
    with pytest.raises(LocalProtocolError, match=match):
        parse_pattern("BAD", source)


@pytest.mark.parametrize("hash_fn", [SHA256, SHA512, BLAKE2S, BLAKE2B], ids=lambda h: h.name)
def test_hash_lengths_match_hashlib(hash_fn: crypto.noise.HashFunction) -> None:
    assert hash_fn.constructor().digest_size == hash_fn.hashlen
    # HMAC pads keys to the constructor's block size, which must be Noise's BLOCKLEN.
    assert hash_fn.constructor().block_size == hash_fn.blocklen


def test_hkdf_matches_rfc5869_case_3() -> None:
    # Empty salt and info: Noise's HKDF with an empty chaining key is RFC 5869's.
    output1, output2 = SHA256.hkdf2(b"", b"\x0b" * 22)
    assert (output1 + output2)[:42].hex() == (
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )


def test_package_docstring_example_runs() -> None:
    doc = crypto.noise.__doc__ or ""
    block = doc.split("::\n", 2)[1].split("\n\n``protocol_name")[0]
    lines = [line[4:] for line in block.splitlines()]
    exec("\n".join(lines), {})


# -- properties -------------------------------------------------------------------------


@settings(derandomize=True, max_examples=200, deadline=None)
@given(
    key=st.binary(min_size=32, max_size=32),
    nonce=st.integers(min_value=0, max_value=MAX_NONCE - 1),
    ad=st.binary(max_size=64),
    plaintext=st.binary(max_size=2048),
    flip=st.integers(min_value=0, max_value=2**20),
)
def test_encrypt_decrypt_round_trip(
    key: bytes, nonce: int, ad: bytes, plaintext: bytes, flip: int
) -> None:
    sender, receiver = CipherState(CHACHAPOLY, key), CipherState(CHACHAPOLY, key)
    sender.set_nonce(nonce)
    receiver.set_nonce(nonce)
    ciphertext = sender.encrypt_with_ad(ad, plaintext)
    assert len(ciphertext) == len(plaintext) + TAG_BYTES
    corrupted = bytearray(ciphertext)
    corrupted[flip % len(corrupted)] ^= 1 << (flip % 8)
    with pytest.raises(DecryptError):
        receiver.decrypt_with_ad(ad, bytes(corrupted))
    assert receiver.decrypt_with_ad(ad, ciphertext) == plaintext
    assert sender.n == receiver.n == nonce + 1
