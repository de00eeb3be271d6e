"""crypto.identity: node ids and the key-file format (pure)."""

from __future__ import annotations

import base64
import hashlib

import msgpack
import nacl.pwhash
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto.identity import (
    MAGIC,
    BadPassphraseError,
    KeyFileCorruptError,
    PassphraseRequiredError,
    decode_key_file,
    encode_key_file,
    generate_identity,
    is_sealed,
    node_id_from_public_key,
)

SEED = bytes(range(32))
# Fast Argon2id parameters for tests; the format stores them, so decoding follows.
FAST = {
    "opslimit": nacl.pwhash.argon2id.OPSLIMIT_MIN,
    "memlimit": nacl.pwhash.argon2id.MEMLIMIT_MIN,
}


def test_node_id_is_base32_of_first_16_bytes_of_blake2b() -> None:
    identity = generate_identity(SEED)
    digest = hashlib.blake2b(identity.public_key).digest()[:16]
    expected = base64.b32encode(digest).decode().rstrip("=").lower()
    assert identity.node_id == expected
    assert len(identity.node_id) == 26
    # BLAKE2b with a 16-byte digest size is a *different* function: make sure we
    # did not use it by accident.
    other = hashlib.blake2b(identity.public_key, digest_size=16).digest()
    assert identity.node_id != base64.b32encode(other).decode().rstrip("=").lower()


def test_node_id_rejects_wrong_key_length() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        node_id_from_public_key(b"\x00" * 31)


def test_same_seed_same_identity_and_signatures_verify() -> None:
    a, b = generate_identity(SEED), generate_identity(SEED)
    assert a.public_key == b.public_key
    sig = a.sign(b"hello")
    b.signing_key.verify_key.verify(b"hello", sig)
    assert generate_identity().node_id != a.node_id


def test_repr_never_shows_the_private_key() -> None:
    identity = generate_identity(SEED)
    text = repr(identity)
    assert identity.node_id in text
    assert SEED.hex() not in text and "signing_key" not in text


def test_unsealed_round_trip() -> None:
    identity = generate_identity(SEED)
    data = encode_key_file(identity)
    assert data.startswith(MAGIC) and not is_sealed(data)
    assert decode_key_file(data).public_key == identity.public_key


def test_sealed_round_trip_hides_the_seed() -> None:
    identity = generate_identity(SEED)
    data = encode_key_file(identity, b"correct horse", **FAST)
    assert is_sealed(data)
    assert SEED not in data
    assert decode_key_file(data, b"correct horse").public_key == identity.public_key


def test_sealed_key_needs_the_right_passphrase() -> None:
    data = encode_key_file(generate_identity(SEED), b"correct horse", **FAST)
    with pytest.raises(PassphraseRequiredError):
        decode_key_file(data)
    with pytest.raises(BadPassphraseError):
        decode_key_file(data, b"wrong")


def test_empty_passphrase_is_refused() -> None:
    with pytest.raises(ValueError, match="empty passphrase"):
        encode_key_file(generate_identity(SEED), b"")


def _file(body: dict[str, object]) -> bytes:
    return MAGIC + msgpack.packb(body, use_bin_type=True)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "header"),
        (b"-----BEGIN PRIVATE KEY-----", "header"),
        (MAGIC + b"\xc1", "msgpack"),
        (MAGIC + msgpack.packb([1, 2]), "not a map"),
        (_file({"v": 2, "alg": "ed25519", "sealed": False, "seed": SEED}), "version"),
        (_file({"v": 1, "alg": "ed25519", "sealed": "no", "seed": SEED}), "sealed"),
        (_file({"v": 1, "alg": "ed25519", "sealed": False}), "fields"),
        (_file({"v": 1, "alg": "ed25519", "sealed": False, "seed": SEED, "x": 1}), "fields"),
        (_file({"v": 1, "alg": "ed25519", "sealed": False, "seed": "text"}), "'seed'"),
        (_file({"v": 1, "alg": "ed25519", "sealed": False, "seed": SEED[:31]}), "32 bytes"),
        (MAGIC + b"\x00" * 5000, "at most"),
    ],
)
def test_corrupt_key_files_are_clear_errors(data: bytes, message: str) -> None:
    with pytest.raises(KeyFileCorruptError, match=message):
        decode_key_file(data)


def test_truncated_sealed_file_is_corrupt_not_a_bad_passphrase() -> None:
    data = encode_key_file(generate_identity(SEED), b"pw", **FAST)
    with pytest.raises(KeyFileCorruptError):
        decode_key_file(data[:-10], b"pw")


@given(st.binary(max_size=300))
def test_random_bytes_only_ever_raise_key_file_corrupt(data: bytes) -> None:
    with pytest.raises(KeyFileCorruptError):
        decode_key_file(data)


@given(st.binary(max_size=200))
def test_random_bodies_after_the_header_only_raise_key_file_corrupt(body: bytes) -> None:
    with pytest.raises(KeyFileCorruptError):
        decode_key_file(MAGIC + body)
