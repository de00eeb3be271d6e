"""Typed wrappers around PyNaCl's Ed25519, which ships without type information.

Keys travel as raw bytes (the 32-byte seed, the 32-byte public key) so that the rest of
the package stays typed and the shell can store them as it likes.
"""

from __future__ import annotations

import nacl.exceptions
import nacl.signing

__all__ = ["PUBLIC_KEY_BYTES", "SEED_BYTES", "SIGNATURE_BYTES", "public_key", "sign", "verify"]

SEED_BYTES = 32
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


def public_key(seed: bytes) -> bytes:
    """Return the Ed25519 public key of a 32-byte seed."""
    _check_length("seed", seed, SEED_BYTES)
    return bytes(nacl.signing.SigningKey(seed).verify_key)


def sign(seed: bytes, message: bytes) -> bytes:
    """Return the 64-byte detached Ed25519 signature of ``message``."""
    _check_length("seed", seed, SEED_BYTES)
    signature: bytes = nacl.signing.SigningKey(seed).sign(message).signature
    return bytes(signature)


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Return whether ``signature`` is a valid Ed25519 signature of ``message``."""
    _check_length("public key", public_key, PUBLIC_KEY_BYTES)
    if len(signature) != SIGNATURE_BYTES:
        return False
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except nacl.exceptions.BadSignatureError:
        return False
    return True


def _check_length(name: str, value: bytes, expected: int) -> None:
    if len(value) != expected:
        raise ValueError(f"Ed25519 {name} must be {expected} bytes, got {len(value)}")
