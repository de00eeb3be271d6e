"""The cosigner (witness) state machine: cosign only checkpoints that extend history.

Theory of operation
-------------------
Members cosign each other's audit-log checkpoints so that a node cannot show different
histories to different peers (a *split view*) without one of its witnesses holding two
signed, incompatible checkpoints.  For every origin (log) a :class:`Cosigner`
remembers the last tree head it cosigned, ``(size, root)``.  Asked to cosign a new
checkpoint, it

1. parses the checkpoint note and verifies the log's Ed25519 signature, the key name
   being the origin (unknown signature lines, such as other cosignatures, are ignored);
2. compares it with the remembered head:

   * first checkpoint of this origin: accepted as is (trust on first use; the proof
     must be empty since there is nothing to prove against);
   * smaller size: refused (:class:`RollbackError`): a cosignature states that this is
     the *largest* head seen;
   * same size: the roots must be equal, else :class:`SplitViewError` carrying both
     roots — two signed checkpoints of the same size with different roots are proof
     that the log equivocated;
   * larger size: the RFC 6962 consistency proof from the remembered head must verify,
     else :class:`ConsistencyError` (with both heads);

3. signs a cosignature/v1 line with timestamp ``now`` (:mod:`crypto.audit.cosignature`)
   and remembers the new head.  State changes only when a cosignature is issued.

A caller that builds its proof from the size it *believes* the cosigner holds can pass
it as ``old_size``; a mismatch raises :class:`OldSizeMismatchError` with the size the
cosigner does hold, so the caller can retry, as in the C2SP tlog-witness protocol.

Pure: time is an argument, nothing is read or written.  :meth:`Cosigner.export_state`
returns plain JSON-compatible data that the shell persists *before* releasing the
cosignature (otherwise a crash could let the cosigner forget what it signed), and
:meth:`Cosigner.from_state` restores it.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from crypto.audit.checkpoint import Checkpoint, parse_checkpoint
from crypto.audit.cosignature import TIMESTAMP_S_MAX, CosignatureV1Signer, CosignatureV1Verifier
from crypto.audit.errors import (
    ConsistencyError,
    CosignError,
    CosignerStateError,
    NoteFormatError,
    OldSizeMismatchError,
    RollbackError,
    SplitViewError,
)
from crypto.audit.note import Ed25519NoteVerifier, b64decode_canonical, parse_note, verify_note
from crypto.merkle import ProofError, verify_consistency

__all__ = ["COSIGNER_ORIGINS_MAX", "COSIGNER_STATE_VERSION", "Cosigner", "TreeHead"]

COSIGNER_ORIGINS_MAX = 10_000
"""Most logs one cosigner tracks; a cluster has far fewer members."""

COSIGNER_STATE_VERSION = 1
"""Version of :meth:`Cosigner.export_state`'s format."""


@dataclass(frozen=True, kw_only=True)
class TreeHead:
    """The last tree head cosigned for one origin."""

    size: int
    root_hash: bytes


class Cosigner:
    """Witness state for many logs; see the module docstring."""

    def __init__(self, *, name: str, signing_key: bytes) -> None:
        """Create a cosigner with no history.

        Args:
            name: the cosigner's key name (e.g. ``vramancer/<cluster>/<node>/witness``).
            signing_key: its 32-byte Ed25519 seed; use a key dedicated to cosigning.
        """
        self._signer = CosignatureV1Signer(name=name, seed=signing_key)
        self._heads: dict[str, TreeHead] = {}

    @property
    def name(self) -> str:
        """The cosigner's key name."""
        return self._signer.name

    def verifier(self) -> CosignatureV1Verifier:
        """Return the verifier clients use for this cosigner's cosignatures."""
        return self._signer.verifier()

    def last_cosigned(self, origin: str) -> TreeHead | None:
        """Return the last head cosigned for ``origin``, or ``None`` if none was."""
        return self._heads.get(origin)

    def cosign(
        self,
        checkpoint_text: str | bytes,
        signer_public_key: bytes,
        consistency_proof: Sequence[bytes],
        now: float,
        *,
        old_size: int | None = None,
    ) -> str:
        """Cosign a signed checkpoint note; return the cosignature line to append to it.

        Args:
            checkpoint_text: the checkpoint as a signed note.
            signer_public_key: the log's (node's) Ed25519 public key.
            consistency_proof: RFC 6962 proof from the last cosigned size to the new one.
            now: current time, POSIX seconds; becomes the cosignature timestamp.
            old_size: the size the proof starts from, if the caller wants it checked.
        """
        if not 0 <= now <= TIMESTAMP_S_MAX:
            raise ValueError(f"now={now} is not a usable POSIX time")
        note = parse_note(checkpoint_text)
        checkpoint = parse_checkpoint(note.text)
        verifier = Ed25519NoteVerifier(name=checkpoint.origin, public_key=signer_public_key)
        verify_note(note, [verifier])
        self._check_extends(checkpoint, consistency_proof, old_size)
        signature = self._signer.sign(note.text.encode(), int(now))
        self._heads[checkpoint.origin] = TreeHead(
            size=checkpoint.size, root_hash=checkpoint.root_hash
        )
        return signature.line()

    def _check_extends(
        self, checkpoint: Checkpoint, proof: Sequence[bytes], old_size: int | None
    ) -> None:
        origin = checkpoint.origin
        previous = self._heads.get(origin)
        known_size = 0 if previous is None else previous.size
        if old_size is not None and old_size != known_size:
            raise OldSizeMismatchError(origin, claimed_size=old_size, known_size=known_size)
        if previous is None and proof:
            # The caller thinks we hold an older head of this log; we hold none.
            raise OldSizeMismatchError(origin, claimed_size=None, known_size=0)
        if previous is None:
            if len(self._heads) >= COSIGNER_ORIGINS_MAX:
                raise CosignError(f"already tracking {COSIGNER_ORIGINS_MAX} logs")
            return
        if checkpoint.size < previous.size:
            raise RollbackError(origin, known_size=previous.size, new_size=checkpoint.size)

        def refuse(error: type[ConsistencyError], reason: str) -> ConsistencyError:
            return error(
                origin,
                old_size=previous.size,
                old_root=previous.root_hash,
                new_size=checkpoint.size,
                new_root=checkpoint.root_hash,
                reason=reason,
            )

        if checkpoint.size == previous.size and checkpoint.root_hash != previous.root_hash:
            raise refuse(SplitViewError, "same size, different roots")
        if previous.size == 0:
            # Every tree extends the empty one; RFC 6962 has no proof for it.
            if proof:
                raise refuse(ConsistencyError, "a proof from the empty tree")
            return
        try:
            verify_consistency(
                previous.size, checkpoint.size, proof, previous.root_hash, checkpoint.root_hash
            )
        except ProofError as exc:
            raise refuse(ConsistencyError, str(exc)) from exc

    def export_state(self) -> dict[str, object]:
        """Return the remembered heads as plain, JSON-compatible data."""
        logs = {
            origin: {"size": head.size, "root_hash": base64.b64encode(head.root_hash).decode()}
            for origin, head in sorted(self._heads.items())
        }
        return {"version": COSIGNER_STATE_VERSION, "logs": logs}

    @classmethod
    def from_state(cls, *, name: str, signing_key: bytes, state: Mapping[str, object]) -> Cosigner:
        """Create a cosigner that remembers what ``state`` (from :meth:`export_state`)
        says it cosigned; raise :class:`CosignerStateError` if ``state`` is malformed."""
        cosigner = cls(name=name, signing_key=signing_key)
        if state.get("version") != COSIGNER_STATE_VERSION:
            raise CosignerStateError(f"unsupported state version {state.get('version')!r}")
        if set(state) != {"version", "logs"}:
            raise CosignerStateError("state must have exactly the keys version and logs")
        logs = state["logs"]
        if not isinstance(logs, Mapping) or len(logs) > COSIGNER_ORIGINS_MAX:
            raise CosignerStateError(f"logs must be a map of at most {COSIGNER_ORIGINS_MAX}")
        for origin, entry in logs.items():
            cosigner._heads[origin] = _import_head(origin, entry)
        return cosigner


def _import_head(origin: object, entry: object) -> TreeHead:
    if not isinstance(origin, str) or not isinstance(entry, Mapping):
        raise CosignerStateError(f"malformed entry for {origin!r}")
    if set(entry) != {"size", "root_hash"}:
        raise CosignerStateError(f"{origin}: entry must have exactly size and root_hash")
    size, root_text = entry["size"], entry["root_hash"]
    if not isinstance(size, int) or isinstance(size, bool) or not isinstance(root_text, str):
        raise CosignerStateError(f"{origin}: size must be an int and root_hash a string")
    try:
        root_hash = b64decode_canonical(root_text)
        # Reuse the checkpoint rules: origin line, size range, root length, empty root.
        Checkpoint(origin=origin, size=size, root_hash=root_hash)
    except (NoteFormatError, ValueError) as exc:
        raise CosignerStateError(f"{origin}: {exc}") from exc
    return TreeHead(size=size, root_hash=root_hash)
