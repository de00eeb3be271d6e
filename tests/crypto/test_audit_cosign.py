"""cosignature/v1 and the Cosigner witness state machine."""

from __future__ import annotations

import base64
import json

import pytest

from crypto.audit import (
    BadSignatureError,
    Checkpoint,
    ConsistencyError,
    CosignatureV1Signer,
    Cosigner,
    CosignError,
    CosignerStateError,
    Ed25519NoteSigner,
    NoteFormatError,
    OldSizeMismatchError,
    RollbackError,
    SplitViewError,
    TreeHead,
    UnverifiedNoteError,
    _ed25519,
    audit_origin,
    cosignature_timestamp,
    open_checkpoint,
    parse_note,
    sign_checkpoint,
    verify_note,
)
from crypto.audit import cosigner as cosigner_module
from crypto.merkle import EMPTY_ROOT, MemoryTree

NODE_SEED = b"\x11" * 32
NODE_PUBLIC_KEY = _ed25519.public_key(NODE_SEED)
WITNESS_SEED = b"\x22" * 32
WITNESS_NAME = "vramancer/cluster1/nodebbbb/witness"
ORIGIN = audit_origin("cluster1", "nodeaaaa")
NOW = 1_700_000_000.75


class Log:
    """A node's audit log as far as checkpoints go: a tree and the node's key."""

    def __init__(self, seed: bytes = NODE_SEED, origin: str = ORIGIN) -> None:
        self.tree = MemoryTree()
        self.signer = Ed25519NoteSigner(name=origin, seed=seed)
        self.origin = origin

    def grow(self, count: int, tag: bytes = b"") -> None:
        for _ in range(count):
            self.tree.append(tag + b"record %d" % self.tree.size)

    def checkpoint(self, size: int | None = None) -> str:
        size = self.tree.size if size is None else size
        head = Checkpoint(origin=self.origin, size=size, root_hash=self.tree.root(size))
        return sign_checkpoint(head, [self.signer])


def new_cosigner() -> Cosigner:
    return Cosigner(name=WITNESS_NAME, signing_key=WITNESS_SEED)


# --- cosignature/v1 format -------------------------------------------------------------


def test_cosignature_v1_layout_and_message() -> None:
    signer = CosignatureV1Signer(name=WITNESS_NAME, seed=WITNESS_SEED)
    body = f"{ORIGIN}\n0\n{base64.b64encode(EMPTY_ROOT).decode()}\n"
    signature = signer.sign(body.encode(), 1_700_000_000)
    blob = base64.b64decode(signature.line().split(" ")[-1])
    assert len(blob) == 4 + 8 + 64
    assert int.from_bytes(blob[:4], "big") == signer.verifier().key_id
    assert blob[4:12] == (1_700_000_000).to_bytes(8, "big")
    message = b"cosignature/v1\ntime 1700000000\n" + body.encode()
    assert _ed25519.verify(_ed25519.public_key(WITNESS_SEED), message, blob[12:])
    assert cosignature_timestamp(signature) == 1_700_000_000


def test_cosignature_key_id_differs_from_plain_ed25519() -> None:
    plain = Ed25519NoteSigner(name=WITNESS_NAME, seed=WITNESS_SEED).verifier()
    cosig = CosignatureV1Signer(name=WITNESS_NAME, seed=WITNESS_SEED).verifier()
    assert plain.key_id != cosig.key_id
    assert cosig.vkey().split("+")[2].startswith("B")  # base64 of type byte 0x04


def test_cosignature_does_not_verify_for_another_time_or_text() -> None:
    signer = CosignatureV1Signer(name=WITNESS_NAME, seed=WITNESS_SEED)
    verifier = signer.verifier()
    signature = signer.sign(b"text\n", 100).signature
    assert verifier.verify(b"text\n", signature)
    assert not verifier.verify(b"text!\n", signature)
    shifted = (101).to_bytes(8, "big") + signature[8:]
    assert not verifier.verify(b"text\n", shifted)
    assert not verifier.verify(b"text\n", signature[:-1])
    too_late = (1 << 63).to_bytes(8, "big") + signature[8:]
    assert not verifier.verify(b"text\n", too_late)
    with pytest.raises(ValueError):
        signer.sign(b"text\n", -1)


# --- the cosigner ----------------------------------------------------------------------


def test_first_checkpoint_is_cosigned_and_the_line_verifies() -> None:
    log, cosigner = Log(), new_cosigner()
    log.grow(5)
    note = log.checkpoint()
    line = cosigner.cosign(note, NODE_PUBLIC_KEY, [], NOW)
    assert line.startswith(f"\u2014 {WITNESS_NAME} ")
    cosigned = note + line
    opened = open_checkpoint(cosigned, [log.signer.verifier(), cosigner.verifier()])
    assert [s.name for s in opened.verified] == [ORIGIN, WITNESS_NAME]
    assert cosignature_timestamp(opened.verified[1]) == int(NOW)
    assert cosigner.last_cosigned(ORIGIN) == TreeHead(size=5, root_hash=log.tree.root())


def test_growth_with_a_valid_proof_is_cosigned() -> None:
    log, cosigner = Log(), new_cosigner()
    log.grow(5)
    cosigner.cosign(log.checkpoint(), NODE_PUBLIC_KEY, [], NOW)
    log.grow(8)
    proof = log.tree.consistency_proof(5)
    cosigner.cosign(log.checkpoint(), NODE_PUBLIC_KEY, proof, NOW + 1, old_size=5)
    head = cosigner.last_cosigned(ORIGIN)
    assert head is not None
    assert head.size == 13
    # The same head again (a fresh timestamp) is fine; the proof must then be empty.
    cosigner.cosign(log.checkpoint(), NODE_PUBLIC_KEY, [], NOW + 2)


def test_growth_from_an_empty_log() -> None:
    log, cosigner = Log(), new_cosigner()
    cosigner.cosign(log.checkpoint(), NODE_PUBLIC_KEY, [], NOW)
    log.grow(3)
    cosigner.cosign(log.checkpoint(), NODE_PUBLIC_KEY, [], NOW)
    assert cosigner.last_cosigned(ORIGIN) == TreeHead(size=3, root_hash=log.tree.root())


def test_split_view_is_refused_with_both_roots() -> None:
    honest, forked, cosigner = Log(), Log(), new_cosigner()
    honest.grow(6)
    forked.grow(6, tag=b"forked ")
    cosigner.cosign(honest.checkpoint(), NODE_PUBLIC_KEY, [], NOW)
    with pytest.raises(SplitViewError) as info:
        cosigner.cosign(forked.checkpoint(), NODE_PUBLIC_KEY, [], NOW)
    error = info.value
    assert (error.old_size, error.new_size) == (6, 6)
    assert error.old_root == honest.tree.root()
    assert error.new_root == forked.tree.root()
    assert cosigner.last_cosigned(ORIGIN) == TreeHead(size=6, root_hash=honest.tree.root())


def test_a_fork_that_grew_is_refused_as_inconsistent() -> None:
    honest, forked, cosigner = Log(), Log(), new_cosigner()
    honest.grow(6)
    forked.grow(3)
    forked.grow(7, tag=b"forked ")
    cosigner.cosign(honest.checkpoint(), NODE_PUBLIC_KEY, [], NOW)
    # The best the forked log can offer: its own consistency proof from size 6.
    with pytest.raises(ConsistencyError) as info:
        cosigner.cosign(forked.checkpoint(), NODE_PUBLIC_KEY, forked.tree.consistency_proof(6), NOW)
    assert not isinstance(info.value, SplitViewError)
    assert (info.value.old_root, info.value.new_root) == (honest.tree.root(), forked.tree.root())
    assert info.value.__cause__ is not None


def test_bad_or_missing_proof_is_refused() -> None:
    log, cosigner = Log(), new_cosigner()
    log.grow(6)
    cosigner.cosign(log.checkpoint(), NODE_PUBLIC_KEY, [], NOW)
    log.grow(4)
    proof = log.tree.consistency_proof(6)
    with pytest.raises(ConsistencyError, match="empty"):
        cosigner.cosign(log.checkpoint(), NODE_PUBLIC_KEY, [], NOW)
    flipped = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
    with pytest.raises(ConsistencyError):
        cosigner.cosign(log.checkpoint(), NODE_PUBLIC_KEY, flipped, NOW)
    with pytest.raises(ConsistencyError):
        cosigner.cosign(log.checkpoint(), NODE_PUBLIC_KEY, proof[:-1], NOW)
    assert cosigner.last_cosigned(ORIGIN) == TreeHead(size=6, root_hash=log.tree.root(6))


def test_rollback_is_refused() -> None:
    log, cosigner = Log(), new_cosigner()
    log.grow(9)
    cosigner.cosign(log.checkpoint(), NODE_PUBLIC_KEY, [], NOW)
    with pytest.raises(RollbackError) as info:
        cosigner.cosign(log.checkpoint(size=4), NODE_PUBLIC_KEY, [], NOW)
    assert (info.value.known_size, info.value.new_size) == (9, 4)


def test_old_size_mismatch_tells_the_caller_what_the_cosigner_holds() -> None:
    log, cosigner = Log(), new_cosigner()
    log.grow(4)
    cosigner.cosign(log.checkpoint(), NODE_PUBLIC_KEY, [], NOW)
    log.grow(4)
    with pytest.raises(OldSizeMismatchError) as info:
        cosigner.cosign(
            log.checkpoint(), NODE_PUBLIC_KEY, log.tree.consistency_proof(2), NOW, old_size=2
        )
    assert (info.value.claimed_size, info.value.known_size) == (2, 4)
    fresh = new_cosigner()
    with pytest.raises(OldSizeMismatchError) as info:
        fresh.cosign(log.checkpoint(), NODE_PUBLIC_KEY, log.tree.consistency_proof(4), NOW)
    assert (info.value.claimed_size, info.value.known_size) == (None, 0)


def test_checkpoint_signed_by_another_key_is_refused() -> None:
    log, impostor, cosigner = Log(), Log(seed=b"\x33" * 32), new_cosigner()
    log.grow(2)
    impostor.grow(2)
    # Same origin (key name), other key: the key id differs, so the signature is not the
    # log's and the log's own is missing.
    with pytest.raises(UnverifiedNoteError):
        cosigner.cosign(impostor.checkpoint(), NODE_PUBLIC_KEY, [], NOW)
    assert cosigner.last_cosigned(ORIGIN) is None


def test_checkpoint_without_the_logs_signature_is_refused() -> None:
    log, cosigner = Log(), new_cosigner()
    log.grow(2)
    stranger = Ed25519NoteSigner(name="someone", seed=b"\x44" * 32)
    body = Checkpoint(origin=ORIGIN, size=2, root_hash=log.tree.root())
    with pytest.raises(UnverifiedNoteError):
        cosigner.cosign(sign_checkpoint(body, [stranger]), NODE_PUBLIC_KEY, [], NOW)


def test_tampered_checkpoint_text_is_refused() -> None:
    log, cosigner = Log(), new_cosigner()
    log.grow(3)
    note = log.checkpoint().replace("\n3\n", "\n4\n", 1)
    with pytest.raises(BadSignatureError):
        cosigner.cosign(note, NODE_PUBLIC_KEY, [], NOW)
    with pytest.raises(NoteFormatError):
        cosigner.cosign("not a note", NODE_PUBLIC_KEY, [], NOW)


def test_other_cosignatures_on_the_checkpoint_are_ignored() -> None:
    log, first, second = Log(), new_cosigner(), Cosigner(name="w2", signing_key=b"\x55" * 32)
    log.grow(3)
    note = log.checkpoint()
    note += first.cosign(note, NODE_PUBLIC_KEY, [], NOW)
    note += second.cosign(note, NODE_PUBLIC_KEY, [], NOW)
    verified = verify_note(parse_note(note), [first.verifier(), second.verifier()])
    assert [s.name for s in verified] == [WITNESS_NAME, "w2"]


@pytest.mark.parametrize("now", [-1.0, float("nan"), float("inf"), float(1 << 63)])
def test_unusable_times_are_refused(now: float) -> None:
    log = Log()
    with pytest.raises(ValueError):
        new_cosigner().cosign(log.checkpoint(), NODE_PUBLIC_KEY, [], now)


def test_number_of_tracked_logs_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cosigner_module, "COSIGNER_ORIGINS_MAX", 2)
    cosigner = new_cosigner()
    for name in ("a", "b"):
        cosigner.cosign(Log(origin=audit_origin("c", name)).checkpoint(), NODE_PUBLIC_KEY, [], NOW)
    with pytest.raises(CosignError, match="tracking 2 logs"):
        cosigner.cosign(Log(origin=audit_origin("c", "z")).checkpoint(), NODE_PUBLIC_KEY, [], NOW)


# --- state export / import -------------------------------------------------------------


def test_state_roundtrips_through_json_and_keeps_refusing_split_views() -> None:
    honest, forked, cosigner = Log(), Log(), new_cosigner()
    honest.grow(6)
    forked.grow(6, tag=b"forked ")
    cosigner.cosign(honest.checkpoint(), NODE_PUBLIC_KEY, [], NOW)
    state = json.loads(json.dumps(cosigner.export_state()))
    assert state == {
        "version": 1,
        "logs": {ORIGIN: {"size": 6, "root_hash": base64.b64encode(honest.tree.root()).decode()}},
    }
    restored = Cosigner.from_state(name=WITNESS_NAME, signing_key=WITNESS_SEED, state=state)
    assert restored.last_cosigned(ORIGIN) == cosigner.last_cosigned(ORIGIN)
    with pytest.raises(SplitViewError):
        restored.cosign(forked.checkpoint(), NODE_PUBLIC_KEY, [], NOW)


ROOT = base64.b64encode(b"\x01" * 32).decode()


@pytest.mark.parametrize(
    "state",
    [
        {"version": 2, "logs": {}},
        {"logs": {}},
        {"version": 1, "logs": {}, "extra": 1},
        {"version": 1, "logs": []},
        {"version": 1, "logs": {ORIGIN: {"size": 1}}},
        {"version": 1, "logs": {ORIGIN: {"size": "1", "root_hash": ROOT}}},
        {"version": 1, "logs": {ORIGIN: {"size": True, "root_hash": ROOT}}},
        {"version": 1, "logs": {ORIGIN: {"size": -1, "root_hash": ROOT}}},
        {"version": 1, "logs": {ORIGIN: {"size": 1, "root_hash": ROOT[:-4]}}},
        {"version": 1, "logs": {ORIGIN: {"size": 1, "root_hash": "!!"}}},
        {"version": 1, "logs": {ORIGIN: {"size": 0, "root_hash": ROOT}}},
        {"version": 1, "logs": {"": {"size": 1, "root_hash": ROOT}}},
        {"version": 1, "logs": {ORIGIN: {"size": 1, "root_hash": ROOT, "x": 1}}},
    ],
)
def test_malformed_state_is_refused(state: dict[str, object]) -> None:
    with pytest.raises(CosignerStateError):
        Cosigner.from_state(name=WITNESS_NAME, signing_key=WITNESS_SEED, state=state)
