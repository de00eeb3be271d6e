"""Sealing gossip datagrams with the cluster gossip key (XChaCha20-Poly1305).

Theory of operation
-------------------
Gossip travels as UDP datagrams of at most ``DATAGRAM_BYTES_MAX`` bytes (1400: under
every common path MTU, so nothing fragments).  Each is sealed with the cluster's
gossip key::

    datagram = nonce (24 random bytes) || XChaCha20-Poly1305(key, nonce, ad, plaintext)

XChaCha20's 24-byte nonce is large enough to draw at random for every datagram with
no counter to keep (unlike ChaCha20's 12 bytes).  The associated data binds the
protocol version and the cluster id, so a datagram from another cluster, or from a
different protocol generation, fails authentication like a forgery.

A :class:`Keyring` lets the key rotate (memberlist's keyring): the first key seals,
every key opens — install the new key everywhere, make it primary, then drop the old
one.  The key reaches a node only at admission, inside the secure channel.

Errors: :class:`GossipSealError` — ``GossipFormatError`` (wrong size),
``GossipDecryptError`` (no key opens it).  The shell drops such datagrams and counts
them; they are never fatal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import nacl.bindings
import nacl.exceptions
import nacl.utils

KEY_BYTES = 32
NONCE_BYTES = 24
TAG_BYTES = 16
SEAL_OVERHEAD_BYTES = NONCE_BYTES + TAG_BYTES
DATAGRAM_BYTES_MAX = 1400
PLAINTEXT_BYTES_MAX = DATAGRAM_BYTES_MAX - SEAL_OVERHEAD_BYTES
KEYRING_KEYS_MAX = 4
AD_PREFIX = b"vramancer/gossip/1:"


class GossipSealError(Exception):
    """A datagram cannot be sealed or opened."""


class GossipFormatError(GossipSealError):
    """The datagram or plaintext has an impossible size."""


class GossipDecryptError(GossipSealError):
    """No key of the keyring authenticates the datagram."""


class Keyring:
    """The gossip keys of a cluster, primary first."""

    def __init__(
        self,
        keys: Sequence[bytes],
        cluster_id: str,
        *,
        random_bytes: Callable[[int], bytes] = nacl.utils.random,
    ) -> None:
        if not 1 <= len(keys) <= KEYRING_KEYS_MAX:
            raise ValueError(f"a keyring holds 1..{KEYRING_KEYS_MAX} keys, got {len(keys)}")
        for key in keys:
            if len(key) != KEY_BYTES:
                raise ValueError(f"a gossip key is {KEY_BYTES} bytes, got {len(key)}")
        self.keys = tuple(bytes(k) for k in keys)
        self._ad = AD_PREFIX + cluster_id.encode("ascii")
        self._random_bytes = random_bytes

    def __repr__(self) -> str:  # the keys are secrets
        return f"Keyring(keys={len(self.keys)})"

    def seal(self, plaintext: bytes) -> bytes:
        """Encrypt ``plaintext`` with the primary key into one datagram."""
        if len(plaintext) > PLAINTEXT_BYTES_MAX:
            raise GossipFormatError(
                f"gossip plaintext of {len(plaintext)} bytes > {PLAINTEXT_BYTES_MAX}"
            )
        nonce = self._random_bytes(NONCE_BYTES)
        sealed: bytes = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
            plaintext, self._ad, nonce, self.keys[0]
        )
        return nonce + sealed

    def open(self, datagram: bytes) -> bytes:
        """Authenticate and decrypt ``datagram`` with any key of the ring."""
        if not SEAL_OVERHEAD_BYTES <= len(datagram) <= DATAGRAM_BYTES_MAX:
            raise GossipFormatError(
                f"gossip datagram of {len(datagram)} bytes is outside "
                f"{SEAL_OVERHEAD_BYTES}..{DATAGRAM_BYTES_MAX}"
            )
        nonce, sealed = datagram[:NONCE_BYTES], datagram[NONCE_BYTES:]
        for key in self.keys:
            try:
                plaintext: bytes = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                    sealed, self._ad, nonce, key
                )
            except nacl.exceptions.CryptoError:
                continue
            return plaintext
        raise GossipDecryptError("no gossip key opens this datagram (wrong cluster or forged)")
