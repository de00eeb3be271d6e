"""C2SP signed notes: known-answer vectors from other implementations, parsing, verification."""

from __future__ import annotations

import base64

import pytest

from crypto.audit import (
    BadSignatureError,
    Ed25519NoteSigner,
    Ed25519NoteVerifier,
    Note,
    NoteFormatError,
    NoteSignature,
    UnverifiedNoteError,
    encode_vkey,
    key_id,
    parse_note,
    parse_vkey,
    sign_note,
    verifier_from_vkey,
    verify_note,
)

# golang.org/x/mod/sumdb/note, note_test.go / package documentation: the signer key, the
# verifier key and the note Go produces.  Ed25519 is deterministic, so we must produce
# the same bytes.
GO_SIGNER_KEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n"
    "\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)

# The example of https://c2sp.org/signed-note.
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n"
    "\u2014 example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)


def go_signer() -> Ed25519NoteSigner:
    # PRIVATE+KEY+<name>+<id>+base64(0x01 || seed)
    blob = base64.b64decode(GO_SIGNER_KEY.split("+", 4)[4])
    assert blob[0] == 0x01
    return Ed25519NoteSigner(name="PeterNeumann", seed=blob[1:])


def test_go_reference_note_is_reproduced_byte_for_byte() -> None:
    signer = go_signer()
    assert signer.verifier().vkey() == GO_VERIFIER_KEY
    assert sign_note(GO_TEXT, [signer]) == GO_NOTE


def test_go_reference_note_verifies() -> None:
    verified = verify_note(parse_note(GO_NOTE), [verifier_from_vkey(GO_VERIFIER_KEY)])
    assert [(s.name, s.key_id) for s in verified] == [("PeterNeumann", 0xC74F20A3)]


def test_spec_example_verifies() -> None:
    verifier = verifier_from_vkey(SPEC_VKEY)
    assert verifier.key_id == 0x530D903A
    assert verify_note(parse_note(SPEC_NOTE.encode()), [verifier])[0].name == "example.com/foo"


def test_key_id_is_sha256_of_name_newline_type_key() -> None:
    parsed = parse_vkey(GO_VERIFIER_KEY)
    assert parsed.sig_type == 0x01
    assert key_id(parsed.name, 0x01, parsed.public_key) == 0xC74F20A3
    assert key_id(parsed.name, 0x04, parsed.public_key) != 0xC74F20A3
    assert encode_vkey(parsed.name, parsed.sig_type, parsed.public_key) == GO_VERIFIER_KEY


def test_tampered_text_is_a_bad_signature() -> None:
    note = parse_note(GO_NOTE.replace("cryptography", "cryptographY"))
    with pytest.raises(BadSignatureError) as info:
        verify_note(note, [verifier_from_vkey(GO_VERIFIER_KEY)])
    assert (info.value.name, info.value.key_id) == ("PeterNeumann", 0xC74F20A3)


def test_unknown_signers_are_ignored_and_a_note_needs_one_known() -> None:
    stranger = Ed25519NoteSigner(name="stranger", seed=b"\x01" * 32)
    known = Ed25519NoteSigner(name="known", seed=b"\x02" * 32)
    note = parse_note(sign_note("hello\n", [stranger, known]))
    assert [s.name for s in verify_note(note, [known.verifier()])] == ["known"]
    with pytest.raises(UnverifiedNoteError):
        verify_note(note, [Ed25519NoteSigner(name="other", seed=b"\x03" * 32).verifier()])


def test_same_name_other_key_is_ignored_not_failed() -> None:
    """The spec: a signature matching a known key's name but not its id is unknown."""
    impostor = Ed25519NoteSigner(name="known", seed=b"\x09" * 32)
    known = Ed25519NoteSigner(name="known", seed=b"\x02" * 32)
    note = parse_note(sign_note("hello\n", [impostor, known]))
    assert len(verify_note(note, [known.verifier()])) == 1


def test_a_bad_signature_by_a_known_key_rejects_the_note() -> None:
    known = Ed25519NoteSigner(name="known", seed=b"\x02" * 32)
    good = known.sign(b"hello\n")
    bad = NoteSignature(name="known", key_id=good.key_id, signature=b"\x00" * 64)
    with pytest.raises(BadSignatureError):
        verify_note(Note(text="hello\n", signatures=(bad, good)), [known.verifier()])


def test_repeated_signatures_by_one_key_are_skipped() -> None:
    known = Ed25519NoteSigner(name="known", seed=b"\x02" * 32)
    good = known.sign(b"hello\n")
    note = Note(text="hello\n", signatures=(good, good))
    assert verify_note(note, [known.verifier()]) == (good,)


def test_text_with_blank_lines_splits_at_the_last_one() -> None:
    signer = Ed25519NoteSigner(name="s", seed=b"\x02" * 32)
    text = "para one\n\npara two\n"
    note = parse_note(sign_note(text, [signer]))
    assert note.text == text
    verify_note(note, [signer.verifier()])


def test_two_verifiers_for_one_key_are_a_local_error() -> None:
    verifier = verifier_from_vkey(GO_VERIFIER_KEY)
    with pytest.raises(ValueError, match="two verifiers"):
        verify_note(parse_note(GO_NOTE), [verifier, verifier])


@pytest.mark.parametrize(
    "note",
    [
        "no signatures\n",
        "text\n\n",
        "text\n\n\u2014 name AAAAAA==\n",  # 4 bytes: a key id and no signature
        "text\n\n- name " + base64.b64encode(b"\x00" * 68).decode() + "\n",
        "text\n\n\u2014 name" + base64.b64encode(b"\x00" * 68).decode() + "\n",
        "text\n\n\u2014 na+me " + base64.b64encode(b"\x00" * 68).decode() + "\n",
        "text\n\n\u2014 name " + base64.b64encode(b"\x00" * 68).decode(),  # no final newline
        "text\n\n\u2014 name " + base64.b64encode(b"\x00" * 68).decode().rstrip("=") + "\n",
        "text\n\n\u2014 name AAAAAAB=\n",  # non-canonical base64 (stray low bits)
        "te\rxt\n\n\u2014 name " + base64.b64encode(b"\x00" * 68).decode() + "\n",
        "text\n\n\u2014 name " + base64.b64encode(b"\x00" * 68).decode() + "\n\n",
    ],
)
def test_malformed_notes_are_rejected(note: str) -> None:
    with pytest.raises(NoteFormatError):
        parse_note(note)


def test_invalid_utf8_and_oversized_notes_are_rejected() -> None:
    with pytest.raises(NoteFormatError, match="UTF-8"):
        parse_note(b"\xff\n\n\xe2\x80\x94 n AAAAAAAA\n")
    with pytest.raises(NoteFormatError, match="longer"):
        parse_note(b"x" * (1 << 20) + b"\n")


def test_signature_count_is_bounded() -> None:
    line = "\u2014 name " + base64.b64encode(b"\x00" * 68).decode() + "\n"
    parse_note("text\n\n" + line * 100)
    with pytest.raises(NoteFormatError, match="more than 100"):
        parse_note("text\n\n" + line * 101)


@pytest.mark.parametrize(
    "vkey",
    [
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong id
        "PeterNeumann+0xf20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
)
def test_malformed_verifier_keys_are_rejected(vkey: str) -> None:
    with pytest.raises(NoteFormatError):
        parse_vkey(vkey)


def test_unsupported_verifier_key_type() -> None:
    vkey = encode_vkey("name", 0x02, b"\x00" * 32)
    with pytest.raises(ValueError, match="unsupported"):
        verifier_from_vkey(vkey)


def test_verifier_validates_its_key() -> None:
    with pytest.raises(ValueError):
        Ed25519NoteVerifier(name="n", public_key=b"\x00" * 31)
    with pytest.raises(NoteFormatError):
        Ed25519NoteVerifier(name="has space", public_key=b"\x00" * 32)
