"""C2SP signed notes (https://c2sp.org/signed-note): text signed by one or more keys.

Theory of operation
-------------------
A signed note is UTF-8 text ending in a newline, a blank line, then one or more
signature lines::

    <text, ending in \\n>
    \\n
    — <key name> <base64(4-byte key id || signature bytes)>\\n
    ...

(— is U+2014 EM DASH.)  No ASCII control characters other than newline appear
anywhere; the text is separated from the signatures by the *last* blank line.  A key is
identified by its name together with its 32-bit key id, for Ed25519
``SHA-256(name || 0x0A || 0x01 || public key)[:4]`` read big-endian.

Verification follows the spec and the Go reference (golang.org/x/mod/sumdb/note):
signatures whose (name, key id) match no known key are ignored; a signature by a known
key that fails to verify rejects the whole note (:class:`BadSignatureError`); a note
with no verified signature from a known key is rejected (:class:`UnverifiedNoteError`);
a known key's second signature is skipped.  The number of signature lines and the note
size are bounded.  Base64 must be canonical, so that a signature line has exactly one
spelling.

Verifiers and signers are small objects behind the :class:`NoteVerifier` and
:class:`NoteSigner` protocols; Ed25519 ones are defined here, timestamped witness
cosignatures in :mod:`crypto.audit.cosignature`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from crypto.audit import _ed25519
from crypto.audit.errors import BadSignatureError, NoteFormatError, UnverifiedNoteError

__all__ = [
    "KEY_ID_BYTES",
    "NOTE_BYTES_MAX",
    "NOTE_SIGNATURES_MAX",
    "SIGNATURE_LINE_PREFIX",
    "SIG_TYPE_ED25519",
    "Ed25519NoteSigner",
    "Ed25519NoteVerifier",
    "Note",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "VerifierKey",
    "b64decode_canonical",
    "check_key_name",
    "encode_vkey",
    "key_id",
    "parse_note",
    "parse_vkey",
    "sign_note",
    "verify_note",
]

SIGNATURE_LINE_PREFIX = "\u2014 "
"""EM DASH and a space: how every signature line starts."""

KEY_ID_BYTES = 4
SIG_TYPE_ED25519 = 0x01
"""Signature type byte of plain Ed25519 note signatures (C2SP signed-note)."""

NOTE_SIGNATURES_MAX = 100
"""Most signature lines accepted (the spec requires at least 16; Go allows 100)."""
NOTE_BYTES_MAX = 1 << 20
"""Largest note accepted, in UTF-8 bytes; a checkpoint with cosignatures is < 4 KiB."""

_HEX_KEY_ID = re.compile(r"[0-9a-fA-F]{8}")


def key_id(name: str, sig_type: int, public_key: bytes) -> int:
    """Return the C2SP key id: SHA-256(name || 0x0A || sig_type || public_key)[:4]."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()
    return int.from_bytes(digest[:KEY_ID_BYTES], "big")


def check_key_name(name: str) -> None:
    """Raise :class:`NoteFormatError` unless ``name`` is a valid key name: non-empty,
    without spaces (Unicode), plus signs or control characters."""
    if not name or "+" in name or any(char.isspace() or ord(char) < 0x20 for char in name):
        raise NoteFormatError(f"invalid key name {name!r}")


def b64decode_canonical(text: str) -> bytes:
    """Decode standard padded base64, refusing any spelling but the canonical one."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise NoteFormatError(f"invalid base64 {text!r}") from exc
    if base64.b64encode(data).decode() != text:
        raise NoteFormatError(f"non-canonical base64 {text!r}")
    return data


@dataclass(frozen=True, kw_only=True)
class NoteSignature:
    """One signature line, parsed."""

    name: str
    """Key name."""
    key_id: int
    """32-bit key id."""
    signature: bytes
    """Signature bytes after the key id (their meaning depends on the key type)."""

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if not 0 <= self.key_id < 1 << (8 * KEY_ID_BYTES):
            raise NoteFormatError(f"key id {self.key_id} out of range")
        if not self.signature:
            raise NoteFormatError("empty signature")

    def line(self) -> str:
        """Return the signature line, newline included."""
        blob = self.key_id.to_bytes(KEY_ID_BYTES, "big") + self.signature
        return f"{SIGNATURE_LINE_PREFIX}{self.name} {base64.b64encode(blob).decode()}\n"


@dataclass(frozen=True, kw_only=True)
class Note:
    """A note text and its signatures (verified or not: see :func:`verify_note`)."""

    text: str
    """The signed text, final newline included."""
    signatures: tuple[NoteSignature, ...]
    """Signature lines in order; at least one."""

    def __post_init__(self) -> None:
        _check_characters(self.text)
        if not self.text.endswith("\n"):
            raise NoteFormatError("note text must end with a newline")
        if not 1 <= len(self.signatures) <= NOTE_SIGNATURES_MAX:
            raise NoteFormatError(f"a note needs 1 to {NOTE_SIGNATURES_MAX} signatures")

    def encode(self) -> str:
        """Return the note in its text form."""
        return self.text + "\n" + "".join(signature.line() for signature in self.signatures)


def parse_note(data: str | bytes) -> Note:
    """Parse a signed note (no verification); raise :class:`NoteFormatError`."""
    if isinstance(data, bytes):
        if len(data) > NOTE_BYTES_MAX:
            raise NoteFormatError(f"note longer than {NOTE_BYTES_MAX} bytes")
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteFormatError("note is not valid UTF-8") from exc
    elif len(data.encode("utf-8", "surrogatepass")) > NOTE_BYTES_MAX:
        raise NoteFormatError(f"note longer than {NOTE_BYTES_MAX} bytes")
    _check_characters(data)
    split = data.rfind("\n\n")
    if split < 0:
        raise NoteFormatError("no blank line before the signatures")
    text, block = data[: split + 1], data[split + 2 :]
    if not block.endswith("\n"):
        raise NoteFormatError("signature block must end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > NOTE_SIGNATURES_MAX:
        raise NoteFormatError(f"more than {NOTE_SIGNATURES_MAX} signatures")
    return Note(text=text, signatures=tuple(_parse_signature_line(line) for line in lines))


def _parse_signature_line(line: str) -> NoteSignature:
    if not line.startswith(SIGNATURE_LINE_PREFIX):
        raise NoteFormatError(f"signature line does not start with an em dash: {line!r}")
    name, space, encoded = line[len(SIGNATURE_LINE_PREFIX) :].partition(" ")
    if not space or not encoded:
        raise NoteFormatError(f"signature line without signature: {line!r}")
    check_key_name(name)
    blob = b64decode_canonical(encoded)
    if len(blob) <= KEY_ID_BYTES:
        raise NoteFormatError(f"signature of {name} is too short")
    return NoteSignature(
        name=name,
        key_id=int.from_bytes(blob[:KEY_ID_BYTES], "big"),
        signature=blob[KEY_ID_BYTES:],
    )


def _check_characters(text: str) -> None:
    for char in text:
        if ord(char) < 0x20 and char != "\n":
            raise NoteFormatError(f"control character {ord(char):#04x} in note")
        if 0xD800 <= ord(char) <= 0xDFFF:
            raise NoteFormatError("lone surrogate in note")


class NoteVerifier(Protocol):
    """Something that can check signatures by one key."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> int: ...

    def verify(self, text: bytes, signature: bytes) -> bool:
        """Return whether ``signature`` (the bytes after the key id) signs ``text``."""
        ...


class NoteSigner(Protocol):
    """Something that can sign a note text with one key."""

    @property
    def name(self) -> str: ...

    def sign(self, text: bytes) -> NoteSignature:
        """Return the signature of ``text`` (the whole note text, final newline included)."""
        ...


@dataclass(frozen=True, kw_only=True)
class Ed25519NoteVerifier:
    """Verifies plain Ed25519 note signatures (type 0x01) by one named key."""

    name: str
    public_key: bytes
    key_id: int = field(init=False)

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.public_key) != _ed25519.PUBLIC_KEY_BYTES:
            raise ValueError(f"Ed25519 public key must be {_ed25519.PUBLIC_KEY_BYTES} bytes")
        object.__setattr__(self, "key_id", key_id(self.name, SIG_TYPE_ED25519, self.public_key))

    def verify(self, text: bytes, signature: bytes) -> bool:
        return _ed25519.verify(self.public_key, text, signature)

    def vkey(self) -> str:
        """Return the verifier key string ``<name>+<hex key id>+<base64(0x01 || key)>``."""
        return encode_vkey(self.name, SIG_TYPE_ED25519, self.public_key)


@dataclass(frozen=True, kw_only=True)
class Ed25519NoteSigner:
    """Signs notes with a plain Ed25519 key (type 0x01) under a name."""

    name: str
    seed: bytes = field(repr=False)

    def __post_init__(self) -> None:
        check_key_name(self.name)
        _ed25519.public_key(self.seed)  # validates the seed length early

    def verifier(self) -> Ed25519NoteVerifier:
        """Return the matching verifier."""
        return Ed25519NoteVerifier(name=self.name, public_key=_ed25519.public_key(self.seed))

    def sign(self, text: bytes) -> NoteSignature:
        return NoteSignature(
            name=self.name,
            key_id=self.verifier().key_id,
            signature=_ed25519.sign(self.seed, text),
        )


def sign_note(text: str, signers: Iterable[NoteSigner]) -> str:
    """Sign ``text`` with every signer; return the note in text form."""
    _check_characters(text)
    message = text.encode()
    signatures = tuple(signer.sign(message) for signer in signers)
    return Note(text=text, signatures=signatures).encode()


def verify_note(note: Note, verifiers: Iterable[NoteVerifier]) -> tuple[NoteSignature, ...]:
    """Verify ``note`` against known keys; return the signatures that verified.

    Raises :class:`BadSignatureError` if a known key's signature fails and
    :class:`UnverifiedNoteError` if no known key signed.
    """
    known: dict[tuple[str, int], NoteVerifier] = {}
    for candidate in verifiers:
        identity = (candidate.name, candidate.key_id)
        if identity in known:
            raise ValueError(f"two verifiers for key {candidate.name}+{candidate.key_id:08x}")
        known[identity] = candidate
    message = note.text.encode()
    seen: set[tuple[str, int]] = set()
    verified: list[NoteSignature] = []
    for signature in note.signatures:
        identity = (signature.name, signature.key_id)
        verifier = known.get(identity)
        if verifier is None or identity in seen:
            continue
        seen.add(identity)
        if not verifier.verify(message, signature.signature):
            raise BadSignatureError(signature.name, signature.key_id)
        verified.append(signature)
    if not verified:
        raise UnverifiedNoteError("no signature by a known key")
    return tuple(verified)


@dataclass(frozen=True, kw_only=True)
class VerifierKey:
    """A parsed verifier key string (``<name>+<hex key id>+<base64(type || key)>``)."""

    name: str
    key_id: int
    sig_type: int
    public_key: bytes


def parse_vkey(vkey: str) -> VerifierKey:
    """Parse a verifier key string, checking that its key id matches its key."""
    name, plus, rest = vkey.partition("+")
    hex_id, plus2, encoded = rest.partition("+")
    if not plus or not plus2:
        raise NoteFormatError(f"malformed verifier key {vkey!r}")
    check_key_name(name)
    if not _HEX_KEY_ID.fullmatch(hex_id):
        raise NoteFormatError(f"malformed key id in {vkey!r}")
    claimed_id = int(hex_id, 16)
    blob = b64decode_canonical(encoded)
    if len(blob) < 2:
        raise NoteFormatError(f"verifier key {vkey!r} has no key material")
    sig_type, public_key = blob[0], blob[1:]
    if key_id(name, sig_type, public_key) != claimed_id:
        raise NoteFormatError(f"key id of {vkey!r} does not match its key")
    return VerifierKey(name=name, key_id=claimed_id, sig_type=sig_type, public_key=public_key)


def encode_vkey(name: str, sig_type: int, public_key: bytes) -> str:
    """Return the verifier key string ``<name>+<hex key id>+<base64(type || key)>``."""
    check_key_name(name)
    blob = base64.b64encode(bytes([sig_type]) + public_key).decode()
    return f"{name}+{key_id(name, sig_type, public_key):08x}+{blob}"
