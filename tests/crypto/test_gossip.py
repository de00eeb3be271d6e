"""crypto.gossip: sealed datagrams, keyring rotation, refusal of everything else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.gossip import (
    DATAGRAM_BYTES_MAX,
    PLAINTEXT_BYTES_MAX,
    GossipDecryptError,
    GossipFormatError,
    GossipSealError,
    Keyring,
)

OLD, NEW, OTHER = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
CLUSTER = "ixinohhskr2xu2yhe24hiqwm3m"


def test_round_trip_and_nonce_is_fresh_each_time() -> None:
    ring = Keyring([OLD], CLUSTER)
    a, b = ring.seal(b"ping"), ring.seal(b"ping")
    assert a != b  # random nonces
    assert ring.open(a) == ring.open(b) == b"ping"
    assert len(a) == 4 + 40


def test_largest_plaintext_fits_one_datagram() -> None:
    ring = Keyring([OLD], CLUSTER)
    assert len(ring.seal(b"x" * PLAINTEXT_BYTES_MAX)) == DATAGRAM_BYTES_MAX
    with pytest.raises(GossipFormatError):
        ring.seal(b"x" * (PLAINTEXT_BYTES_MAX + 1))


def test_rotation_new_primary_still_opens_old_datagrams() -> None:
    old_ring, rotated = Keyring([OLD], CLUSTER), Keyring([NEW, OLD], CLUSTER)
    assert rotated.open(old_ring.seal(b"from a node not rotated yet")) == (
        b"from a node not rotated yet"
    )
    assert Keyring([NEW], CLUSTER).open(rotated.seal(b"new")) == b"new"
    with pytest.raises(GossipDecryptError):
        old_ring.open(rotated.seal(b"sealed with the new key"))


def test_other_cluster_or_key_or_tampering_is_refused() -> None:
    datagram = Keyring([OLD], CLUSTER).seal(b"hello")
    with pytest.raises(GossipDecryptError):
        Keyring([OTHER], CLUSTER).open(datagram)
    with pytest.raises(GossipDecryptError):
        Keyring([OLD], "aaaaaaaaaaaaaaaaaaaaaaaaaa").open(datagram)  # same key, other cluster
    flipped = bytearray(datagram)
    flipped[-1] ^= 1
    with pytest.raises(GossipDecryptError):
        Keyring([OLD], CLUSTER).open(bytes(flipped))
    with pytest.raises(GossipFormatError):
        Keyring([OLD], CLUSTER).open(datagram[:39])
    with pytest.raises(GossipFormatError):
        Keyring([OLD], CLUSTER).open(b"\x00" * (DATAGRAM_BYTES_MAX + 1))


def test_keyring_validation_and_repr_hides_keys() -> None:
    with pytest.raises(ValueError):
        Keyring([], CLUSTER)
    with pytest.raises(ValueError):
        Keyring([b"short"], CLUSTER)
    assert OLD.hex() not in repr(Keyring([OLD], CLUSTER))


@settings(derandomize=True, database=None, deadline=None)
@given(st.binary(max_size=DATAGRAM_BYTES_MAX + 10))
def test_random_datagrams_only_raise_seal_errors(data: bytes) -> None:
    with pytest.raises(GossipSealError):
        Keyring([OLD, NEW], CLUSTER).open(data)
