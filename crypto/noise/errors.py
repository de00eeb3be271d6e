"""Exceptions raised by :mod:`crypto.noise`, sorted by whose fault they are.

Theory of operation
-------------------
Every error this package raises is a :class:`NoiseError`.  Below it the tree says
who is to blame, the way h11 splits ``LocalProtocolError`` from
``RemoteProtocolError``, so the daemon can react without reading messages::

    NoiseError
    ├── LocalProtocolError          this process misused the API: fix the code
    │   ├── UnsupportedProtocolError    protocol name or pattern not implemented here
    │   └── MessageTooLongError         asked to send more than 65535 bytes
    ├── RemoteProtocolError         the peer's bytes are wrong: close the connection
    │   ├── HandshakeError              a handshake message is malformed (length)
    │   ├── DecryptError                AEAD authentication failed (tampered, wrong
    │   │                               key or prologue, replayed, reordered)
    │   └── LowOrderPointError          a DH result was all zeros (low-order point)
    └── NonceExhaustedError         2^64-1 messages sent or received on one key: the
                                    session is over, run a new handshake

A handshake that raised anything is dead: every later call on it raises
:class:`LocalProtocolError`.  A transport :class:`~crypto.noise.cipher_state.CipherState`
survives a :class:`DecryptError` with its nonce unchanged, so the caller decides
whether to drop the connection (the daemon does) or retry.

Errors from PyNaCl are translated at this boundary (``raise DecryptError(...) from
exc``); nothing from ``nacl.exceptions`` escapes the package.
"""

from __future__ import annotations

__all__ = [
    "DecryptError",
    "HandshakeError",
    "LocalProtocolError",
    "LowOrderPointError",
    "MessageTooLongError",
    "NoiseError",
    "NonceExhaustedError",
    "RemoteProtocolError",
    "UnsupportedProtocolError",
]


class NoiseError(Exception):
    """Base class of every error raised by :mod:`crypto.noise`."""


class LocalProtocolError(NoiseError):
    """This side misused the API: wrong turn, missing key, split before completion."""


class UnsupportedProtocolError(LocalProtocolError):
    """The protocol name names a pattern, modifier or algorithm we do not implement."""


class MessageTooLongError(LocalProtocolError):
    """Asked to send a Noise message longer than ``MAX_MESSAGE_BYTES`` (65535)."""


class RemoteProtocolError(NoiseError):
    """The peer sent bytes that violate the protocol; the connection must be closed."""


class HandshakeError(RemoteProtocolError):
    """A handshake message is malformed: too short for its tokens, or too long."""


class DecryptError(RemoteProtocolError):
    """Authenticated decryption failed; the receiving nonce was not advanced."""


class LowOrderPointError(RemoteProtocolError):
    """A Diffie-Hellman result was all zeros: the public key is a low-order point."""


class NonceExhaustedError(NoiseError):
    """The nonce reached 2^64-1 (reserved); this key can carry no more messages."""
