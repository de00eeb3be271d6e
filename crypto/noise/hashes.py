"""Hash functions, HMAC and HKDF (spec sections 4.3 and 12.5-12.8).

Theory of operation
-------------------
A Noise hash function brings ``HASH(data)``, ``HASHLEN`` and ``BLOCKLEN``; from them
the spec derives ``HMAC-HASH`` (RFC 2104 with that block length) and its own
``HKDF(chaining_key, input_key_material, num_outputs)``::

    temp_key = HMAC-HASH(chaining_key, input_key_material)
    output1  = HMAC-HASH(temp_key, byte(0x01))
    output2  = HMAC-HASH(temp_key, output1 || byte(0x02))
    output3  = HMAC-HASH(temp_key, output2 || byte(0x03))   # only if num_outputs == 3

All four hashes come from :mod:`hashlib`.  :mod:`hmac` implements RFC 2104 with
the constructor's own ``block_size``, which equals Noise's ``BLOCKLEN`` for each
(64 for SHA256 and BLAKE2s, 128 for SHA512 and BLAKE2b), so ``HMAC-HASH`` is exactly
the spec's.  BLAKE2 is used unkeyed at full length, as the spec requires.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["BLAKE2B", "BLAKE2S", "HASH_FUNCTIONS", "SHA256", "SHA512", "HashFunction"]

# hashlib constructors share no public type; Any keeps mypy --strict honest here.
_Constructor = Callable[..., Any]


@dataclass(frozen=True, kw_only=True)
class HashFunction:
    """One Noise hash function with the spec's HMAC and HKDF built on it.

    Attributes:
        name: the name used in protocol names, e.g. ``"SHA256"``.
        hashlen: digest length in bytes (``HASHLEN``): 32 or 64.
        blocklen: block length in bytes (``BLOCKLEN``): 64 or 128.
        constructor: the :mod:`hashlib` constructor computing ``HASH``.
    """

    name: str
    hashlen: int
    blocklen: int
    constructor: _Constructor

    def hash(self, data: bytes) -> bytes:
        """``HASH(data)``: the full-length digest of *data*."""
        digest: bytes = self.constructor(data).digest()
        return digest

    def hmac(self, key: bytes, data: bytes) -> bytes:
        """``HMAC-HASH(key, data)`` per RFC 2104 with ``BLOCKLEN`` blocks."""
        return hmac.new(key, data, self.constructor).digest()

    def hkdf2(self, chaining_key: bytes, ikm: bytes) -> tuple[bytes, bytes]:
        """``HKDF(chaining_key, ikm, 2)``: two ``HASHLEN``-byte outputs."""
        temp_key = self.hmac(chaining_key, ikm)
        output1 = self.hmac(temp_key, b"\x01")
        output2 = self.hmac(temp_key, output1 + b"\x02")
        return output1, output2

    def hkdf3(self, chaining_key: bytes, ikm: bytes) -> tuple[bytes, bytes, bytes]:
        """``HKDF(chaining_key, ikm, 3)``: three ``HASHLEN``-byte outputs."""
        temp_key = self.hmac(chaining_key, ikm)
        output1 = self.hmac(temp_key, b"\x01")
        output2 = self.hmac(temp_key, output1 + b"\x02")
        output3 = self.hmac(temp_key, output2 + b"\x03")
        return output1, output2, output3


SHA256 = HashFunction(name="SHA256", hashlen=32, blocklen=64, constructor=hashlib.sha256)
SHA512 = HashFunction(name="SHA512", hashlen=64, blocklen=128, constructor=hashlib.sha512)
BLAKE2S = HashFunction(name="BLAKE2s", hashlen=32, blocklen=64, constructor=hashlib.blake2s)
BLAKE2B = HashFunction(name="BLAKE2b", hashlen=64, blocklen=128, constructor=hashlib.blake2b)

#: Hash functions by protocol-name component.
HASH_FUNCTIONS: dict[str, HashFunction] = {h.name: h for h in (SHA256, SHA512, BLAKE2S, BLAKE2B)}
