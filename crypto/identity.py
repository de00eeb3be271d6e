"""Node identities: Ed25519 key pairs, node ids, and the key-file format.

Theory of operation
-------------------
A node is its Ed25519 key pair.  Its *node id* is the lowercase, unpadded base32 of
the first 16 bytes of BLAKE2b-512 over the public key: 26 characters, short enough
to read aloud, long enough (128 bits) that nobody picks a key to collide with it.

The key file holds the 32-byte Ed25519 seed, either in the clear (the file's 0600
mode protects it) or *sealed* under a passphrase: Argon2id stretches the passphrase
into a SecretBox key (XSalsa20-Poly1305), and the Argon2id parameters travel in the
file so they can be raised later without breaking old files.

Layout: ``MAGIC`` followed by one msgpack map::

    {"v": 1, "alg": "ed25519", "sealed": false, "seed": <32 bytes>}
    {"v": 1, "alg": "ed25519", "sealed": true, "salt": <16 bytes>,
     "opslimit": int, "memlimit": int, "box": <SecretBox ciphertext of the seed>}

Encoding and decoding are pure; creating the file (``O_EXCL``, mode 0600) is the
shell's job (:mod:`vramancer_node.identity`).

Errors::

    IdentityError
    ├── KeyFileCorruptError      the bytes are not a key file we wrote
    ├── PassphraseRequiredError  the key is sealed and no passphrase was given
    └── BadPassphraseError       the passphrase does not open the seal
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

import msgpack
import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.signing
import nacl.utils

MAGIC = b"VRMKEY1\n"
"""First bytes of every key file: a format check before any parsing."""

SEED_BYTES = 32
NODE_ID_DIGEST_BYTES = 16
KEY_FILE_BYTES_MAX = 4096
"""A key file is a few hundred bytes; anything larger is not ours."""

SALT_BYTES = nacl.pwhash.argon2id.SALTBYTES
# Interactive Argon2id limits: ~0.1 s and 64 MiB, which a Raspberry Pi can afford at
# every start.  Stored per file, so a later release may raise them.
ARGON2_OPSLIMIT_DEFAULT: int = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
ARGON2_MEMLIMIT_DEFAULT: int = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE


class IdentityError(Exception):
    """Base class of identity and key-file errors."""


class KeyFileCorruptError(IdentityError):
    """The key file's bytes are not a valid key file."""


class PassphraseRequiredError(IdentityError):
    """The key file is sealed and no passphrase was supplied."""


class BadPassphraseError(IdentityError):
    """The passphrase does not open the sealed key."""


def node_id_from_public_key(public_key: bytes) -> str:
    """Return the node id of an Ed25519 public key (26 lowercase base32 characters)."""
    if len(public_key) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, got {len(public_key)}")
    digest = hashlib.blake2b(public_key).digest()[:NODE_ID_DIGEST_BYTES]
    return base64.b32encode(digest).decode("ascii").rstrip("=").lower()


@dataclass(frozen=True, kw_only=True)
class NodeIdentity:
    """A node's signing key and the names derived from it."""

    signing_key: nacl.signing.SigningKey
    """The Ed25519 private key; never logged, never sent."""

    @property
    def public_key(self) -> bytes:
        """The 32-byte Ed25519 public key."""
        return bytes(self.signing_key.verify_key)

    @property
    def public_key_b64(self) -> str:
        """The public key in standard base64, as shown to people and in JSON."""
        return base64.b64encode(self.public_key).decode("ascii")

    @property
    def node_id(self) -> str:
        """The node id derived from the public key."""
        return node_id_from_public_key(self.public_key)

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``message``."""
        return bytes(self.signing_key.sign(message).signature)

    def __repr__(self) -> str:  # never let the private key reach a log line
        return f"NodeIdentity(node_id={self.node_id!r})"


def generate_identity(seed: bytes | None = None) -> NodeIdentity:
    """Create an identity from ``seed`` (32 bytes), or from fresh OS randomness."""
    if seed is None:
        seed = nacl.utils.random(SEED_BYTES)
    if len(seed) != SEED_BYTES:
        raise ValueError(f"an Ed25519 seed is {SEED_BYTES} bytes, got {len(seed)}")
    return NodeIdentity(signing_key=nacl.signing.SigningKey(seed))


def _derive_box_key(passphrase: bytes, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    key: bytes = nacl.pwhash.argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE, passphrase, salt, opslimit=opslimit, memlimit=memlimit
    )
    return key


def encode_key_file(
    identity: NodeIdentity,
    passphrase: bytes | None = None,
    *,
    salt: bytes | None = None,
    opslimit: int = ARGON2_OPSLIMIT_DEFAULT,
    memlimit: int = ARGON2_MEMLIMIT_DEFAULT,
) -> bytes:
    """Serialise ``identity``, sealed under ``passphrase`` when one is given."""
    seed = bytes(identity.signing_key)
    body: dict[str, Any] = {"v": 1, "alg": "ed25519", "sealed": passphrase is not None}
    if passphrase is None:
        body["seed"] = seed
    else:
        if not passphrase:
            raise ValueError("an empty passphrase seals nothing; omit it instead")
        salt = nacl.utils.random(SALT_BYTES) if salt is None else salt
        key = _derive_box_key(passphrase, salt, opslimit, memlimit)
        box = nacl.secret.SecretBox(key).encrypt(seed)
        body.update(salt=salt, opslimit=opslimit, memlimit=memlimit, box=bytes(box))
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    return MAGIC + packed


def is_sealed(data: bytes) -> bool:
    """Whether the key file ``data`` needs a passphrase (raises if it is corrupt)."""
    return bool(_parse_key_file(data)["sealed"])


_PLAIN_FIELDS: dict[str, type] = {"v": int, "alg": str, "sealed": bool, "seed": bytes}
_SEALED_FIELDS: dict[str, type] = {
    "v": int,
    "alg": str,
    "sealed": bool,
    "salt": bytes,
    "opslimit": int,
    "memlimit": int,
    "box": bytes,
}


def _parse_key_file(data: bytes) -> dict[str, Any]:
    if len(data) > KEY_FILE_BYTES_MAX:
        raise KeyFileCorruptError(f"key file is {len(data)} bytes; at most {KEY_FILE_BYTES_MAX}")
    if not data.startswith(MAGIC):
        raise KeyFileCorruptError("key file does not start with the VRMKEY1 header")
    try:
        body = msgpack.unpackb(data[len(MAGIC) :], raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise KeyFileCorruptError(f"key file body is not valid msgpack: {exc}") from exc
    if not isinstance(body, dict):
        raise KeyFileCorruptError("key file body is not a map")
    if body.get("v") != 1 or body.get("alg") != "ed25519":
        raise KeyFileCorruptError(
            f"unsupported key file version/algorithm {body.get('v')!r}/{body.get('alg')!r}"
        )
    sealed = body.get("sealed")
    if not isinstance(sealed, bool):
        raise KeyFileCorruptError("key file field 'sealed' must be true or false")
    expected = _SEALED_FIELDS if sealed else _PLAIN_FIELDS
    if set(body) != set(expected):
        raise KeyFileCorruptError(f"key file fields {sorted(body)} != {sorted(expected)}")
    for name, kind in expected.items():
        if not isinstance(body[name], kind):
            raise KeyFileCorruptError(f"key file field {name!r} must be {kind.__name__}")
    return body


def decode_key_file(data: bytes, passphrase: bytes | None = None) -> NodeIdentity:
    """Parse a key file, opening its seal with ``passphrase`` when it is sealed."""
    body = _parse_key_file(data)
    if not body["sealed"]:
        seed = body["seed"]
    else:
        if passphrase is None:
            raise PassphraseRequiredError("the node key is sealed; a passphrase is required")
        if len(body["salt"]) != SALT_BYTES:
            raise KeyFileCorruptError(f"key file salt must be {SALT_BYTES} bytes")
        try:
            key = _derive_box_key(passphrase, body["salt"], body["opslimit"], body["memlimit"])
        except (ValueError, nacl.exceptions.CryptoError) as exc:
            raise KeyFileCorruptError(f"key file Argon2id parameters are invalid: {exc}") from exc
        try:
            seed = nacl.secret.SecretBox(key).decrypt(body["box"])
        except nacl.exceptions.CryptoError as exc:
            raise BadPassphraseError("the passphrase does not open the node key") from exc
    if len(seed) != SEED_BYTES:
        raise KeyFileCorruptError(f"key file seed must be {SEED_BYTES} bytes, got {len(seed)}")
    return generate_identity(bytes(seed))
