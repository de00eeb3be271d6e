"""Protocol names (spec section 8): ``Noise_<pattern>_<dh>_<cipher>_<hash>``.

Theory of operation
-------------------
A Noise protocol is fully named by one string, e.g.
``Noise_XX_25519_ChaChaPoly_SHA256``.  :meth:`NoiseProtocol.from_name` splits it and
looks each part up in the tables of :mod:`.patterns`, :mod:`.dh`, :mod:`.ciphers` and
:mod:`.hashes`; the result is an immutable bundle the handshake reads from.  The
exact name is also hashed into the handshake (``InitializeSymmetric``), so two peers
that disagree on any part fail at the first encrypted payload.

Anything we do not implement (448, AESGCM, ``fallback``, unknown patterns) raises
:class:`~crypto.noise.errors.UnsupportedProtocolError`; the conformance runner counts
those vectors as skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

from .ciphers import CIPHER_FUNCTIONS, CipherFunction
from .dh import DH_FUNCTIONS, DHFunction
from .errors import UnsupportedProtocolError
from .hashes import HASH_FUNCTIONS, HashFunction
from .patterns import HandshakePattern, pattern_by_name

__all__ = ["DEFAULT_SUITE", "NoiseProtocol"]

#: DH, cipher and hash the daemon uses (the libp2p suite, DESIGN.md section 4).
DEFAULT_SUITE = "25519_ChaChaPoly_SHA256"

_NAME_PARTS = 5  # "Noise", pattern, dh, cipher, hash


@dataclass(frozen=True, kw_only=True)
class NoiseProtocol:
    """A concrete Noise protocol.

    Attributes:
        name: the full protocol name, hashed into the handshake.
        pattern: the handshake pattern, modifiers applied.
        dh: the DH function.
        cipher: the AEAD cipher function.
        hash: the hash function (with HMAC and HKDF).
    """

    name: str
    pattern: HandshakePattern
    dh: DHFunction
    cipher: CipherFunction
    hash: HashFunction

    @classmethod
    def from_name(cls, protocol_name: str) -> NoiseProtocol:
        """Parse *protocol_name*; raises ``UnsupportedProtocolError`` for unknown parts."""
        parts = protocol_name.split("_")
        if len(parts) != _NAME_PARTS or parts[0] != "Noise":
            raise UnsupportedProtocolError(
                f"protocol name {protocol_name!r} is not Noise_<pattern>_<dh>_<cipher>_<hash>"
            )
        _, pattern_name, dh_name, cipher_name, hash_name = parts
        for kind, part, table in (
            ("DH function", dh_name, DH_FUNCTIONS),
            ("cipher", cipher_name, CIPHER_FUNCTIONS),
            ("hash", hash_name, HASH_FUNCTIONS),
        ):
            if part not in table:
                raise UnsupportedProtocolError(
                    f"unsupported {kind} {part!r} in {protocol_name!r}; "
                    f"supported: {', '.join(sorted(table))}"
                )
        return cls(
            name=protocol_name,
            pattern=pattern_by_name(pattern_name),
            dh=DH_FUNCTIONS[dh_name],
            cipher=CIPHER_FUNCTIONS[cipher_name],
            hash=HASH_FUNCTIONS[hash_name],
        )
