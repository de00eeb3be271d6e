"""C2SP tlog checkpoints (https://c2sp.org/tlog-checkpoint) of a node's audit log.

Theory of operation
-------------------
A checkpoint is a signed note whose text is the tree head of a log::

    <origin>\\n
    <tree size, ASCII decimal, no leading zeros>\\n
    <base64 RFC 6962 root hash>\\n
    [<extension line>\\n ...]

The origin names the log.  Each node's audit log is its own log with origin
``vramancer/<cluster id>/<node id>`` (:func:`audit_origin`), and the node signs its
checkpoints with its Ed25519 key under the origin as key name, as the spec recommends.
Peers verify the checkpoint with the node's public key and cosign it
(:mod:`crypto.audit.cosigner`); a client that holds a cosigned checkpoint can then check
inclusion and consistency proofs against its root.

Parsing is strict: exactly the grammar above, a 32-byte root in canonical base64, and a
size-0 checkpoint must carry the empty-tree root.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass

from crypto.audit.errors import CheckpointFormatError, NoteFormatError
from crypto.audit.note import (
    Note,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    b64decode_canonical,
    parse_note,
    sign_note,
    verify_note,
)
from crypto.merkle import EMPTY_ROOT, HASH_BYTES, TREE_SIZE_MAX

__all__ = [
    "ORIGIN_PREFIX",
    "Checkpoint",
    "VerifiedCheckpoint",
    "audit_origin",
    "open_checkpoint",
    "parse_checkpoint",
    "sign_checkpoint",
]

ORIGIN_PREFIX = "vramancer"
"""First component of every audit-log origin."""

ORIGIN_CHARS_MAX = 256
EXTENSION_LINES_MAX = 16

_SIZE = re.compile(r"0|[1-9][0-9]*")
_ORIGIN_COMPONENT = re.compile(r"[A-Za-z0-9._~-]+")


def audit_origin(cluster_id: str, node_id: str) -> str:
    """Return the origin of a node's audit log: ``vramancer/<cluster id>/<node id>``."""
    for name, value in (("cluster id", cluster_id), ("node id", node_id)):
        # URL-safe characters only: the origin doubles as a note key name.
        if not _ORIGIN_COMPONENT.fullmatch(value):
            raise CheckpointFormatError(f"{name} {value!r} cannot be part of an origin")
    return f"{ORIGIN_PREFIX}/{cluster_id}/{node_id}"


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """A tree head of one log.  Validated on construction."""

    origin: str
    """Unique name of the log."""
    size: int
    """Number of leaves (records)."""
    root_hash: bytes
    """RFC 6962 root of the first ``size`` leaves, 32 bytes."""
    extensions: tuple[str, ...] = ()
    """Opaque extension lines; the spec discourages them and we write none."""

    def __post_init__(self) -> None:
        _check_line("origin", self.origin, ORIGIN_CHARS_MAX)
        if not 0 <= self.size <= TREE_SIZE_MAX:
            raise CheckpointFormatError(f"tree size {self.size} out of range")
        if len(self.root_hash) != HASH_BYTES:
            raise CheckpointFormatError(f"root hash must be {HASH_BYTES} bytes")
        if self.size == 0 and self.root_hash != EMPTY_ROOT:
            raise CheckpointFormatError("an empty tree has the SHA-256 of nothing as root")
        if len(self.extensions) > EXTENSION_LINES_MAX:
            raise CheckpointFormatError(f"more than {EXTENSION_LINES_MAX} extension lines")
        for line in self.extensions:
            _check_line("extension line", line, ORIGIN_CHARS_MAX)

    def body(self) -> str:
        """Return the note text of this checkpoint."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode()]
        return "\n".join([*lines, *self.extensions]) + "\n"


@dataclass(frozen=True, kw_only=True)
class VerifiedCheckpoint:
    """A checkpoint whose note verified against known keys."""

    checkpoint: Checkpoint
    note: Note
    """The whole note, all signature lines included (verified or not)."""
    verified: tuple[NoteSignature, ...]
    """The signatures that verified, by known keys."""


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint note text (no signatures); raise :class:`CheckpointFormatError`."""
    if not text.endswith("\n"):
        raise CheckpointFormatError("checkpoint text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointFormatError("checkpoint text needs origin, size and root lines")
    origin, size_text, root_text, *extensions = lines
    if not _SIZE.fullmatch(size_text):
        raise CheckpointFormatError(f"tree size {size_text!r} is not a canonical decimal")
    try:
        root_hash = b64decode_canonical(root_text)
    except NoteFormatError as exc:
        raise CheckpointFormatError(f"root hash: {exc}") from exc
    return Checkpoint(
        origin=origin, size=int(size_text), root_hash=root_hash, extensions=tuple(extensions)
    )


def sign_checkpoint(checkpoint: Checkpoint, signers: Iterable[NoteSigner]) -> str:
    """Return ``checkpoint`` as a signed note, signed by every signer."""
    return sign_note(checkpoint.body(), signers)


def open_checkpoint(
    note_text: str | bytes, verifiers: Iterable[NoteVerifier]
) -> VerifiedCheckpoint:
    """Parse a signed checkpoint and verify its note against ``verifiers``.

    The caller chooses whom to trust: normally the log's own key (named after the
    origin) and, to require cosignatures, the witnesses' keys — then check which of
    them are among :attr:`VerifiedCheckpoint.verified`.
    """
    note = parse_note(note_text)
    checkpoint = parse_checkpoint(note.text)
    verified = verify_note(note, verifiers)
    return VerifiedCheckpoint(checkpoint=checkpoint, note=note, verified=verified)


def _check_line(name: str, value: str, chars_max: int) -> None:
    if not value or len(value) > chars_max:
        raise CheckpointFormatError(f"{name} must be 1 to {chars_max} characters")
    if any(ord(char) < 0x20 for char in value):
        raise CheckpointFormatError(f"{name} contains a control character")
