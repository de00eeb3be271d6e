"""SymmetricState (spec section 5.2): the chaining key and the handshake hash.

Theory of operation
-------------------
During a handshake every byte either side sends or mixes in flows through one
:class:`SymmetricState`:

* ``h``, the handshake hash, absorbs the protocol name, the prologue, every public
  key and every ciphertext (``MixHash``).  Each encryption uses ``h`` as associated
  data, so any disagreement about the transcript, the prologue included, makes the
  next decryption fail.  After the handshake ``h`` is a unique session identifier
  that the daemon signs to bind identities (channel binding).
* ``ck``, the chaining key, absorbs every DH output and PSK (``MixKey``,
  ``MixKeyAndHash``) through HKDF; each step also rekeys the embedded
  :class:`~crypto.noise.cipher_state.CipherState`.
* :meth:`split` derives the two transport keys from ``ck``.

The state is discarded after ``split``; the handshake erases its reference.
"""

from __future__ import annotations

from .cipher_state import CipherState
from .ciphers import KEY_BYTES, CipherFunction
from .hashes import HashFunction

__all__ = ["SymmetricState"]


class SymmetricState:
    """Chaining key, handshake hash and the handshake's CipherState."""

    __slots__ = ("_ck", "_cs", "_h", "_hash")

    def __init__(self, protocol_name: str, cipher: CipherFunction, hash_fn: HashFunction) -> None:
        """``InitializeSymmetric(protocol_name)``."""
        self._hash = hash_fn
        name = protocol_name.encode("ascii")
        # Short names are zero-padded rather than hashed so h starts out readable.
        if len(name) <= hash_fn.hashlen:
            self._h = name.ljust(hash_fn.hashlen, b"\x00")
        else:
            self._h = hash_fn.hash(name)
        self._ck = self._h
        self._cs = CipherState(cipher)

    def __repr__(self) -> str:
        return f"SymmetricState(hash={self._hash.name}, h={self._h.hex()})"

    @property
    def handshake_hash(self) -> bytes:
        """``GetHandshakeHash()``: the current value of ``h``."""
        return self._h

    def has_key(self) -> bool:
        """Whether handshake payloads and static keys are being encrypted yet."""
        return self._cs.has_key()

    def _truncated_key(self, temp_k: bytes) -> bytes:
        # 64-byte hashes yield 64-byte HKDF outputs; cipher keys are 32 bytes.
        return temp_k[:KEY_BYTES]

    def mix_key(self, input_key_material: bytes) -> None:
        """``MixKey(ikm)``: fold a DH output into ``ck`` and rekey the cipher."""
        self._ck, temp_k = self._hash.hkdf2(self._ck, input_key_material)
        self._cs.initialize_key(self._truncated_key(temp_k))

    def mix_hash(self, data: bytes) -> None:
        """``MixHash(data)``: ``h = HASH(h || data)``."""
        self._h = self._hash.hash(self._h + data)

    def mix_key_and_hash(self, input_key_material: bytes) -> None:
        """``MixKeyAndHash(ikm)``: for PSKs, which must reach both ``ck`` and ``h``."""
        self._ck, temp_h, temp_k = self._hash.hkdf3(self._ck, input_key_material)
        self.mix_hash(temp_h)
        self._cs.initialize_key(self._truncated_key(temp_k))

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        """``EncryptAndHash(plaintext)``: encrypt with ``h`` as AD, then hash the result."""
        ciphertext = self._cs.encrypt_with_ad(self._h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        """``DecryptAndHash(ciphertext)``: decrypt with ``h`` as AD, then hash the input."""
        plaintext = self._cs.decrypt_with_ad(self._h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        """``Split()``: the (initiator-to-responder, responder-to-initiator) states."""
        temp_k1, temp_k2 = self._hash.hkdf2(self._ck, b"")
        cipher = self._cs.cipher
        return (
            CipherState(cipher, self._truncated_key(temp_k1)),
            CipherState(cipher, self._truncated_key(temp_k2)),
        )
