"""Exceptions raised by :mod:`crypto.audit`.

::

    AuditError
    ├── RecordFormatError        bytes or values are not a canonical audit record; names
    │                            the offending field (also ValueError)
    ├── ChainError               a sequence of signed records does not verify; carries
    │                            the seq of the first bad record and the reason
    ├── NoteError                a signed note (C2SP signed-note) is not acceptable
    │   ├── NoteFormatError      the text is not a well-formed signed note
    │   ├── BadSignatureError    a signature by a known key does not verify
    │   └── UnverifiedNoteError  no signature by a known key is present
    ├── CheckpointFormatError    a note body is not a C2SP tlog checkpoint
    ├── CosignError              a cosigner refuses to cosign a checkpoint
    │   ├── OldSizeMismatchError the caller's idea of the last cosigned size is wrong
    │   ├── RollbackError        the checkpoint is older than one already cosigned
    │   └── ConsistencyError     the checkpoint was not shown to extend the last one
    │       └── SplitViewError   same size, different root: proof of equivocation
    └── CosignerStateError       imported cosigner state is malformed

Everything below ``AuditError`` except ``CosignerStateError`` is a verdict on input that
came from elsewhere (a peer, the disk): refuse the input, keep running.
"""

from __future__ import annotations

__all__ = [
    "AuditError",
    "BadSignatureError",
    "ChainError",
    "CheckpointFormatError",
    "ConsistencyError",
    "CosignError",
    "CosignerStateError",
    "NoteError",
    "NoteFormatError",
    "OldSizeMismatchError",
    "RecordFormatError",
    "RollbackError",
    "SplitViewError",
    "UnverifiedNoteError",
]


class AuditError(Exception):
    """Base class of every error raised by :mod:`crypto.audit`."""


class RecordFormatError(AuditError, ValueError):
    """A record, or its encoding, is not valid.

    Attributes:
        field: the record field at fault (``"body.a.b"`` inside the body; ``"record"``
            or ``"version"`` for the encoding as a whole).
        reason: what is wrong with it.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"audit record field {field!r}: {reason}")
        self.field = field
        self.reason = reason


class ChainError(AuditError):
    """A hash-chained log of signed records does not verify.

    Attributes:
        seq: position in the chain of the first record that failed (the seq it should
            have carried), so that everything before it is known good.
        reason: what is wrong with it.
    """

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"record {seq}: {reason}")
        self.seq = seq
        self.reason = reason


class NoteError(AuditError):
    """Base class of signed-note errors."""


class NoteFormatError(NoteError, ValueError):
    """The text is not a well-formed C2SP signed note."""


class BadSignatureError(NoteError):
    """A note signature from a known key (name and key id match) does not verify."""

    def __init__(self, name: str, key_id: int) -> None:
        super().__init__(f"signature by {name} (key id {key_id:08x}) does not verify")
        self.name = name
        self.key_id = key_id


class UnverifiedNoteError(NoteError):
    """The note carries no signature from any of the known keys."""


class CheckpointFormatError(AuditError, ValueError):
    """A note body is not a C2SP tlog checkpoint, or a checkpoint value is invalid."""


class CosignError(AuditError):
    """A cosigner refuses a checkpoint."""


class OldSizeMismatchError(CosignError):
    """The caller built its consistency proof from a size the cosigner does not hold.

    Attributes:
        claimed_size: the ``old_size`` the caller gave, or ``None`` if it gave a proof
            for an origin the cosigner has never cosigned.
        known_size: the size the cosigner last cosigned for this origin (0 if none); a
            caller should retry with a proof from this size.
    """

    def __init__(self, origin: str, *, claimed_size: int | None, known_size: int) -> None:
        claim = "a proof was given" if claimed_size is None else f"proof is from {claimed_size}"
        super().__init__(f"{origin}: {claim}, last cosigned size is {known_size}")
        self.origin = origin
        self.claimed_size = claimed_size
        self.known_size = known_size


class RollbackError(CosignError):
    """The checkpoint is smaller than one the cosigner already cosigned."""

    def __init__(self, origin: str, *, known_size: int, new_size: int) -> None:
        super().__init__(f"{origin}: size {new_size} is below cosigned size {known_size}")
        self.origin = origin
        self.known_size = known_size
        self.new_size = new_size


class ConsistencyError(CosignError):
    """The new checkpoint was not proven to extend the last cosigned one.

    Attributes:
        origin: the log.
        old_size, old_root: the last cosigned tree head.
        new_size, new_root: the refused tree head.
    """

    def __init__(
        self,
        origin: str,
        *,
        old_size: int,
        old_root: bytes,
        new_size: int,
        new_root: bytes,
        reason: str,
    ) -> None:
        super().__init__(
            f"{origin}: size {new_size} root {new_root.hex()} is not shown consistent with "
            f"cosigned size {old_size} root {old_root.hex()}: {reason}"
        )
        self.origin = origin
        self.old_size = old_size
        self.old_root = old_root
        self.new_size = new_size
        self.new_root = new_root
        self.reason = reason


class SplitViewError(ConsistencyError):
    """Two checkpoints of the same log and size with different roots: the log signed
    two different histories.  Both roots are kept as evidence."""


class CosignerStateError(AuditError, ValueError):
    """Cosigner state handed to :meth:`Cosigner.from_state` is malformed."""
