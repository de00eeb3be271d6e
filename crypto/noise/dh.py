"""Diffie-Hellman functions (spec section 4.1): Curve25519 through PyNaCl.

Theory of operation
-------------------
Noise needs three things from a DH function: ``GENERATE_KEYPAIR()``, ``DH(kp, pk)``
and ``DHLEN``.  :class:`DHFunction` bundles them as plain callables so the handshake
never touches PyNaCl directly and tests can inject fixed key pairs.

Low-order points.  X25519 maps a public key of small order (the all-zero point, the
order-8 points, and their twists) to an all-zero shared secret whatever our private
key is.  A handshake built on such a secret authenticates nothing, so we refuse it:
libsodium's ``crypto_scalarmult`` already returns an error on an all-zero result,
and we translate that into :class:`~crypto.noise.errors.LowOrderPointError`.  The
explicit zero check below keeps the guarantee even if a future libsodium stopped
failing (spec section 12.1 allows either behaviour; we pick the strict one).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field

import nacl.bindings
import nacl.exceptions
import nacl.public

from .errors import LocalProtocolError, LowOrderPointError

__all__ = ["DH25519", "DH_FUNCTIONS", "DHFunction", "KeyPair", "x25519"]

#: Length of X25519 private keys, public keys and shared secrets, in bytes.
X25519_KEY_BYTES = 32


@dataclass(frozen=True, kw_only=True)
class KeyPair:
    """A DH key pair.

    Attributes:
        private: the private key (32 bytes for 25519); never printed by ``repr``.
        public: the matching public key, sent on the wire by ``e`` and ``s`` tokens.
    """

    private: bytes = field(repr=False)
    public: bytes

    @classmethod
    def from_private(cls, private: bytes) -> KeyPair:
        """Derive the X25519 key pair whose private key is *private*."""
        if len(private) != X25519_KEY_BYTES:
            raise LocalProtocolError(
                f"X25519 private key must be {X25519_KEY_BYTES} bytes, got {len(private)}"
            )
        public: bytes = nacl.bindings.crypto_scalarmult_base(private)
        return cls(private=private, public=public)

    @classmethod
    def generate(cls) -> KeyPair:
        """Return a fresh X25519 key pair from the operating system's CSPRNG."""
        # One scalar multiplication: PrivateKey already derived the public key.
        private_key = nacl.public.PrivateKey.generate()
        return cls(private=bytes(private_key), public=bytes(private_key.public_key))


def x25519(private: bytes, public: bytes) -> bytes:
    """Return the X25519 shared secret, refusing low-order public keys.

    Raises:
        LowOrderPointError: the result is all zeros.
        LocalProtocolError: a key has the wrong length (a caller bug: handshake
            messages are sliced to exactly 32 bytes before they get here).
    """
    if len(private) != X25519_KEY_BYTES or len(public) != X25519_KEY_BYTES:
        raise LocalProtocolError(
            f"X25519 keys must be {X25519_KEY_BYTES} bytes, "
            f"got private={len(private)} public={len(public)}"
        )
    try:
        shared: bytes = nacl.bindings.crypto_scalarmult(private, public)
    except nacl.exceptions.RuntimeError as exc:
        # libsodium returns -1 exactly when the output is all zeros.
        raise LowOrderPointError("X25519 result is all zeros (low-order public key)") from exc
    if hmac.compare_digest(shared, bytes(X25519_KEY_BYTES)):
        raise LowOrderPointError("X25519 result is all zeros (low-order public key)")
    return shared


@dataclass(frozen=True, kw_only=True)
class DHFunction:
    """One Noise DH function.

    Attributes:
        name: the name used in protocol names, e.g. ``"25519"``.
        dhlen: length of public keys and DH outputs, in bytes (``DHLEN``).
        generate_keypair: ``GENERATE_KEYPAIR()``; draws from the OS CSPRNG.
        keypair_from_private: rebuilds a key pair from its private key (test vectors).
        dh: ``DH(private, public)``; raises ``LowOrderPointError`` on a zero result.
    """

    name: str
    dhlen: int
    generate_keypair: Callable[[], KeyPair]
    keypair_from_private: Callable[[bytes], KeyPair]
    dh: Callable[[bytes, bytes], bytes]


DH25519 = DHFunction(
    name="25519",
    dhlen=X25519_KEY_BYTES,
    generate_keypair=KeyPair.generate,
    keypair_from_private=KeyPair.from_private,
    dh=x25519,
)

#: DH functions by protocol-name component.  448 is not offered by libsodium.
DH_FUNCTIONS: dict[str, DHFunction] = {DH25519.name: DH25519}
