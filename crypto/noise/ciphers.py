"""Cipher functions (spec section 4.2): ChaChaPoly through PyNaCl.

Theory of operation
-------------------
Noise needs ``ENCRYPT(k, n, ad, plaintext)`` and ``DECRYPT(k, n, ad, ciphertext)``
over a 32-byte key and a 64-bit counter nonce ``n``.  For ChaChaPoly the 96-bit
IETF nonce is 4 zero bytes followed by ``n`` as 8 little-endian bytes.  The
ciphertext is the encrypted plaintext followed by a 16-byte Poly1305 tag.

``DECRYPT`` failing is the peer's fault (tampering, wrong key, wrong prologue), so
libsodium's ``CryptoError`` becomes :class:`~crypto.noise.errors.DecryptError`.

AESGCM is not offered: libsodium only provides it on CPUs with AES instructions,
which our arm64 edge boards may lack, and the daemon speaks ChaChaPoly only.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import nacl.bindings
import nacl.exceptions

from .errors import DecryptError

__all__ = ["CHACHAPOLY", "CIPHER_FUNCTIONS", "KEY_BYTES", "CipherFunction"]

#: Length of every Noise cipher key, in bytes.
KEY_BYTES = 32

_CHACHA_NONCE_PREFIX = bytes(4)


def _chacha_nonce(n: int) -> bytes:
    # 32 bits of zeros then the counter little-endian, as spec section 12.3 defines.
    return _CHACHA_NONCE_PREFIX + struct.pack("<Q", n)


def chachapoly_encrypt(k: bytes, n: int, ad: bytes, plaintext: bytes) -> bytes:
    """``ENCRYPT(k, n, ad, plaintext)`` for ChaCha20-Poly1305 (IETF)."""
    ciphertext: bytes = nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(
        plaintext, ad, _chacha_nonce(n), k
    )
    return ciphertext


def chachapoly_decrypt(k: bytes, n: int, ad: bytes, ciphertext: bytes) -> bytes:
    """``DECRYPT(k, n, ad, ciphertext)``; raises ``DecryptError`` on a bad tag."""
    try:
        plaintext: bytes = nacl.bindings.crypto_aead_chacha20poly1305_ietf_decrypt(
            ciphertext, ad, _chacha_nonce(n), k
        )
    except nacl.exceptions.CryptoError as exc:
        raise DecryptError(f"ChaChaPoly authentication failed at nonce {n}") from exc
    return plaintext


@dataclass(frozen=True, kw_only=True)
class CipherFunction:
    """One Noise cipher function.

    Attributes:
        name: the name used in protocol names, e.g. ``"ChaChaPoly"``.
        encrypt: ``ENCRYPT(k, n, ad, plaintext) -> ciphertext`` (tag appended).
        decrypt: ``DECRYPT(k, n, ad, ciphertext) -> plaintext``; raises
            ``DecryptError`` when authentication fails.
    """

    name: str
    encrypt: Callable[[bytes, int, bytes, bytes], bytes]
    decrypt: Callable[[bytes, int, bytes, bytes], bytes]


CHACHAPOLY = CipherFunction(
    name="ChaChaPoly", encrypt=chachapoly_encrypt, decrypt=chachapoly_decrypt
)

#: Cipher functions by protocol-name component.
CIPHER_FUNCTIONS: dict[str, CipherFunction] = {CHACHAPOLY.name: CHACHAPOLY}
