"""CipherState (spec section 5.1): one key, one counter nonce, one direction.

Theory of operation
-------------------
A :class:`CipherState` holds a key ``k`` (or none yet) and a 64-bit nonce ``n``.
During the handshake it may have no key, and then encryption is the identity; after
:meth:`~crypto.noise.handshake_state.HandshakeState.split` each side holds one
CipherState per direction.

Nonce rules, each a safety property:

* ``n`` advances only after a *successful* encryption or decryption.  A forged or
  corrupted ciphertext therefore leaves the state untouched, and the genuine message
  can still be decrypted (spec section 5.1: "if DECRYPT signals an error ... n is
  not incremented").
* ``n == 2**64 - 1`` is reserved.  Once the counter reaches it, every further
  encrypt or decrypt raises :class:`~crypto.noise.errors.NonceExhaustedError`; the
  key is spent and the session must be replaced by a new handshake.
* :meth:`rekey` (spec section 11.3) replaces ``k`` by the first 32 bytes of
  ``ENCRYPT(k, 2**64 - 1, b"", 32 zero bytes)`` and keeps ``n``.  Both peers must
  rekey at the same message boundary; the stream layer decides when.

Messages are bounded by ``MAX_MESSAGE_BYTES``: an oversized plaintext to send is a
local error, an oversized ciphertext received is a peer error.
"""

from __future__ import annotations

from .ciphers import KEY_BYTES, CipherFunction
from .errors import (
    DecryptError,
    LocalProtocolError,
    MessageTooLongError,
    NonceExhaustedError,
)
from .limits import MAX_MESSAGE_BYTES, MAX_NONCE, TAG_BYTES

__all__ = ["CipherState"]

_REKEY_ZEROS = bytes(KEY_BYTES)


class CipherState:
    """A key and nonce for one direction of a Noise session."""

    __slots__ = ("_cipher", "_k", "_n")

    def __init__(self, cipher: CipherFunction, k: bytes | None = None) -> None:
        """Create a CipherState using *cipher*, keyed with *k* (``InitializeKey``)."""
        self._cipher = cipher
        self._k: bytes | None = None
        self._n = 0
        self.initialize_key(k)

    def __repr__(self) -> str:
        # The key never appears in logs.
        return f"CipherState(cipher={self._cipher.name}, has_key={self.has_key()}, n={self._n})"

    @property
    def cipher(self) -> CipherFunction:
        """The cipher function this state encrypts with."""
        return self._cipher

    @property
    def n(self) -> int:
        """The nonce the next encryption or decryption will use."""
        return self._n

    def initialize_key(self, k: bytes | None) -> None:
        """``InitializeKey(k)``: install *k* (or no key) and reset the nonce to 0."""
        if k is not None and len(k) != KEY_BYTES:
            raise LocalProtocolError(f"cipher key must be {KEY_BYTES} bytes, got {len(k)}")
        self._k = k
        self._n = 0

    def has_key(self) -> bool:
        """``HasKey()``: whether a key is installed (encryption is active)."""
        return self._k is not None

    def set_nonce(self, n: int) -> None:
        """``SetNonce(n)``: for out-of-order transports and tests; use with care."""
        if not 0 <= n <= MAX_NONCE:
            raise LocalProtocolError(f"nonce must be in [0, 2**64-1], got {n}")
        self._n = n

    def _check_nonce(self) -> None:
        if self._n >= MAX_NONCE:
            raise NonceExhaustedError(
                "nonce 2**64-1 reached: this key is spent, start a new handshake"
            )

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        """``EncryptWithAd(ad, plaintext)``; identity while no key is installed.

        Raises:
            MessageTooLongError: the ciphertext would exceed ``MAX_MESSAGE_BYTES``.
            NonceExhaustedError: the nonce reached 2**64-1.
        """
        overhead = TAG_BYTES if self._k is not None else 0
        if len(plaintext) + overhead > MAX_MESSAGE_BYTES:
            raise MessageTooLongError(
                f"plaintext of {len(plaintext)} bytes exceeds the "
                f"{MAX_MESSAGE_BYTES - overhead}-byte limit"
            )
        if self._k is None:
            return plaintext
        self._check_nonce()
        ciphertext = self._cipher.encrypt(self._k, self._n, ad, plaintext)
        self._n += 1
        return ciphertext

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        """``DecryptWithAd(ad, ciphertext)``; identity while no key is installed.

        On failure the nonce is *not* advanced, so a retry with the genuine
        ciphertext still succeeds.

        Raises:
            DecryptError: authentication failed, the ciphertext is shorter than a
                tag, or longer than ``MAX_MESSAGE_BYTES``.
            NonceExhaustedError: the nonce reached 2**64-1.
        """
        if len(ciphertext) > MAX_MESSAGE_BYTES:
            raise DecryptError(
                f"ciphertext of {len(ciphertext)} bytes exceeds {MAX_MESSAGE_BYTES} bytes"
            )
        if self._k is None:
            return ciphertext
        self._check_nonce()
        if len(ciphertext) < TAG_BYTES:
            raise DecryptError(f"ciphertext of {len(ciphertext)} bytes is shorter than a tag")
        plaintext = self._cipher.decrypt(self._k, self._n, ad, ciphertext)
        self._n += 1
        return plaintext

    def rekey(self) -> None:
        """``Rekey()``: derive a new key from the old one, keeping the nonce.

        Uses the default ``REKEY(k)`` of spec section 4.2: encryption at the reserved
        nonce, which no transport message can ever use, so the new key is
        independent of every ciphertext sent with the old one.
        """
        if self._k is None:
            raise LocalProtocolError("rekey() needs a key; this CipherState has none")
        self._k = self._cipher.encrypt(self._k, MAX_NONCE, b"", _REKEY_ZEROS)[:KEY_BYTES]
