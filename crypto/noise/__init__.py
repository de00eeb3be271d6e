"""The Noise Protocol Framework, revision 34, as a pure sans-I/O library.

Theory of operation
-------------------
Noise builds an authenticated, encrypted channel from a *handshake pattern* (which
keys are exchanged and which Diffie-Hellman results are mixed) and three primitives
named in the protocol name, e.g. ``Noise_XX_25519_ChaChaPoly_SHA256``.  The spec's
three objects map to one module each, innermost first:

* :mod:`.cipher_state` - :class:`CipherState`: a key and a counter nonce;
* :mod:`.symmetric_state` - :class:`SymmetricState`: chaining key ``ck`` and
  handshake hash ``h``;
* :mod:`.handshake_state` - :class:`HandshakeState`: runs a pattern token by token.

Patterns are data in the spec's own notation (:mod:`.patterns`; all one-way,
fundamental interactive and deferred patterns, plus ``pskN`` modifiers).  The
primitives are :mod:`.dh` (X25519, refusing low-order points), :mod:`.ciphers`
(ChaChaPoly), :mod:`.hashes` (SHA256, SHA512, BLAKE2s, BLAKE2b with the spec's
HMAC/HKDF); :mod:`.suite` parses protocol names; :mod:`.limits` names the limits;
:mod:`.errors` draws the exception tree.  ``python -m crypto.noise.vectors FILE...``
checks the implementation against cacophony/snow JSON test vectors.

Nothing here performs I/O, reads a clock or uses the global ``random`` module: bytes
go in and out, and ephemeral keys come from an injectable ``generate_keypair``.

Example
-------
The daemon's handshake (XX), both sides in one process::

    from crypto.noise import HandshakeState, KeyPair

    prologue = b"vramancer/noise/1"
    alice_static, bob_static = KeyPair.generate(), KeyPair.generate()
    alice = HandshakeState.initialize(pattern="XX", initiator=True,
                                      prologue=prologue, s=alice_static)
    bob = HandshakeState.initialize(pattern="XX", initiator=False,
                                    prologue=prologue, s=bob_static)
    bob.read_message(alice.write_message(b""))              # -> e
    alice.read_message(bob.write_message(b"bob's id"))      # <- e, ee, s, es
    bob.read_message(alice.write_message(b"alice's id"))    # -> s, se
    assert alice.complete and bob.complete
    assert alice.handshake_hash == bob.handshake_hash       # sign this to bind ids
    assert alice.remote_static == bob_static.public
    alice_send, alice_recv = alice.split()                  # oriented for this side
    bob_send, bob_recv = bob.split()
    ciphertext = alice_send.encrypt_with_ad(b"", b"hi")
    assert bob_recv.decrypt_with_ad(b"", ciphertext) == b"hi"
    alice_send.rekey()                                      # both ends, same boundary
    bob_recv.rekey()

``protocol_name="Noise_XX_25519_ChaChaPoly_SHA256"`` may be passed instead of (or
with) ``pattern``; that suite is the default.  Fixed ephemeral keys (``e=``) and
``generate_keypair=`` exist for test vectors and deterministic tests.
"""

from __future__ import annotations

from .cipher_state import CipherState
from .ciphers import CHACHAPOLY, CipherFunction
from .dh import DH25519, DHFunction, KeyPair
from .errors import (
    DecryptError,
    HandshakeError,
    LocalProtocolError,
    LowOrderPointError,
    MessageTooLongError,
    NoiseError,
    NonceExhaustedError,
    RemoteProtocolError,
    UnsupportedProtocolError,
)
from .handshake_state import PSK_BYTES, HandshakeState
from .hashes import BLAKE2B, BLAKE2S, SHA256, SHA512, HashFunction
from .limits import MAX_MESSAGE_BYTES, MAX_NONCE, TAG_BYTES
from .patterns import HandshakePattern, Token, pattern_by_name
from .suite import DEFAULT_SUITE, NoiseProtocol
from .symmetric_state import SymmetricState

__all__ = [
    "BLAKE2B",
    "BLAKE2S",
    "CHACHAPOLY",
    "DEFAULT_SUITE",
    "DH25519",
    "MAX_MESSAGE_BYTES",
    "MAX_NONCE",
    "PSK_BYTES",
    "SHA256",
    "SHA512",
    "TAG_BYTES",
    "CipherFunction",
    "CipherState",
    "DHFunction",
    "DecryptError",
    "HandshakeError",
    "HandshakePattern",
    "HandshakeState",
    "HashFunction",
    "KeyPair",
    "LocalProtocolError",
    "LowOrderPointError",
    "MessageTooLongError",
    "NoiseError",
    "NoiseProtocol",
    "NonceExhaustedError",
    "RemoteProtocolError",
    "SymmetricState",
    "Token",
    "UnsupportedProtocolError",
    "pattern_by_name",
]
