"""C2SP tlog checkpoints: a real published checkpoint, our own, and strict parsing."""

from __future__ import annotations

import base64
import dataclasses

import pytest

from crypto.audit import (
    BadSignatureError,
    Checkpoint,
    CheckpointFormatError,
    Ed25519NoteSigner,
    UnverifiedNoteError,
    audit_origin,
    cosignature_timestamp,
    open_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
    verifier_from_vkey,
)
from crypto.merkle import EMPTY_ROOT, MemoryTree

# A checkpoint of the arche2025h1 staging CT log as published, with its Ed25519 log
# signature (key id ba2f06c0), an RFC 6962 signature (cd333cb1) we do not know, and
# witness cosignatures including remora.n621.de's cosignature/v1 (type 0x04).
REAL_CHECKPOINT = """\
arche2025h1.staging.ct.transparency.dev
1432088532
U7WM79jrzyhGZ5/GUBTpM7NzwdyfFx61t3RovgcC4Ro=

\u2014 arche2025h1.staging.ct.transparency.dev zTM8sQAAAZ5W0WdjBAMARjBEAiBjW5IQf9pvsYLfQFX6hoGREPMHbdQ3urbllzalApkptQIgIpwtEroeW2BXaHAI4kJXFbon5Ch9MNL5zRNZ55lvGt0=
\u2014 arche2025h1.staging.ct.transparency.dev ui8GwCF1+kWqZrxGdhj4aX3gcw7XUlXQQabg/27lefwhUkzbC3NygNI75MdhL1bfTW9g8Ei59RA23oHP7Ry1k3ZFWwQ=
\u2014 transparency.dev/DEV:witness-little-garden 2AQqhwAAAABqEiEgzgFIqqhbUoDwjMWE6UP8nd8/KYTzwZ2rhIgcqoXHAwVkjZr4AscylP3v7sEodkRAErumC2q44vdgJY096st5BQ==
\u2014 witness1.smartit.nu/witness1 pIyCDwAAAABqEiEghIp82KWebrw7/oHQwlTAm3g2RKS4+eebl8eO0WH+/iEcxZ75W3u5hNI7TOQtmJbqmNWVuE0tgh0XwzdZsDsUAQ==
\u2014 remora.n621.de 2net5wAAAABqEiEgPlfF3V06o0Y+fHM+J5J9s27wgxxcOVSpZ/2g/KSiXCg9DEZI+aVCIobWX9sXTynk5XeU/zZ0WBxtqB0DrAWfBw==
\u2014 witness.stagemole.eu Z/euoAAAAABqEiEgw0i+7g2ENfDAWHmtRzCfKTHSDwYDJA2NmKeGi9Y8FtEyOUvVr+AJmIY/2TUFucgKi7lI7cUiOvKFYe/TmN9DAg==
"""  # noqa: E501
REAL_LOG_VKEY = (
    "arche2025h1.staging.ct.transparency.dev+ba2f06c0+AU0vHmlGCS/PdN8b2OaGmKprLI8HKM+dJ472xgFYh15f"
)
REAL_WITNESS_VKEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"

NODE_SEED = b"\x05" * 32
ORIGIN = audit_origin("cluster1", "nodeaaaa")


def test_real_checkpoint_verifies_with_log_key_and_witness_cosignature() -> None:
    opened = open_checkpoint(
        REAL_CHECKPOINT, [verifier_from_vkey(REAL_LOG_VKEY), verifier_from_vkey(REAL_WITNESS_VKEY)]
    )
    assert opened.checkpoint.origin == "arche2025h1.staging.ct.transparency.dev"
    assert opened.checkpoint.size == 1432088532
    assert len(opened.note.signatures) == 6
    assert [(s.name, s.key_id) for s in opened.verified] == [
        ("arche2025h1.staging.ct.transparency.dev", 0xBA2F06C0),
        ("remora.n621.de", 0xDA77ADE7),
    ]
    assert cosignature_timestamp(opened.verified[1]) == 1779573024


def test_real_checkpoint_with_changed_size_fails_both_signatures() -> None:
    clobbered = REAL_CHECKPOINT.replace("1432088532", "1432088533")
    for vkey in (REAL_LOG_VKEY, REAL_WITNESS_VKEY):
        with pytest.raises(BadSignatureError):
            open_checkpoint(clobbered, [verifier_from_vkey(vkey)])


def test_real_checkpoint_without_known_keys_is_unverified() -> None:
    stranger = Ed25519NoteSigner(name="x", seed=b"\x01" * 32).verifier()
    with pytest.raises(UnverifiedNoteError):
        open_checkpoint(REAL_CHECKPOINT, [stranger])


def test_audit_origin() -> None:
    assert ORIGIN == "vramancer/cluster1/nodeaaaa"
    for bad in ("", "a/b", "a b", "a+b", "a\n"):
        with pytest.raises(CheckpointFormatError):
            audit_origin(bad, "node")
        with pytest.raises(CheckpointFormatError):
            audit_origin("cluster", bad)


def test_sign_and_open_our_own_checkpoint() -> None:
    tree = MemoryTree(b"record %d" % i for i in range(5))
    checkpoint = Checkpoint(origin=ORIGIN, size=5, root_hash=tree.root())
    signer = Ed25519NoteSigner(name=ORIGIN, seed=NODE_SEED)
    note = sign_checkpoint(checkpoint, [signer])
    root_b64 = base64.b64encode(tree.root()).decode()
    assert note.startswith(f"{ORIGIN}\n5\n{root_b64}\n\n\u2014 {ORIGIN} ")
    opened = open_checkpoint(note, [signer.verifier()])
    assert opened.checkpoint == checkpoint
    assert parse_checkpoint(checkpoint.body()) == checkpoint


def test_extension_lines_roundtrip() -> None:
    checkpoint = Checkpoint(origin="o", size=0, root_hash=EMPTY_ROOT, extensions=("ext one",))
    assert checkpoint.body().endswith("\next one\n")
    assert parse_checkpoint(checkpoint.body()) == checkpoint


ROOT_B64 = base64.b64encode(b"\x01" * 32).decode()


@pytest.mark.parametrize(
    "body",
    [
        f"origin\n5\n{ROOT_B64}",  # no final newline
        "origin\n5\n",  # no root line
        f"\n5\n{ROOT_B64}\n",  # empty origin
        f"origin\n05\n{ROOT_B64}\n",  # leading zero
        f"origin\n+5\n{ROOT_B64}\n",
        f"origin\n-5\n{ROOT_B64}\n",
        f"origin\n\u0665\n{ROOT_B64}\n",  # a non-ASCII digit
        f"origin\n{1 << 64}\n{ROOT_B64}\n",  # beyond uint64
        f"origin\n5\n{ROOT_B64.rstrip('=')}\n",  # unpadded
        f"origin\n5\n{base64.b64encode(b'x' * 31).decode()}\n",  # 31-byte root
        f"origin\n5\n{ROOT_B64}\n\n",  # empty extension line
        f"origin\n0\n{ROOT_B64}\n",  # size 0 with a non-empty root
    ],
)
def test_malformed_bodies_are_rejected(body: str) -> None:
    with pytest.raises(CheckpointFormatError):
        parse_checkpoint(body)


def test_checkpoint_values_are_validated_on_construction() -> None:
    with pytest.raises(CheckpointFormatError):
        Checkpoint(origin="o\nx", size=1, root_hash=b"\x00" * 32)
    with pytest.raises(CheckpointFormatError):
        Checkpoint(origin="o", size=-1, root_hash=b"\x00" * 32)
    good = Checkpoint(origin="o", size=1, root_hash=b"\x00" * 32)
    with pytest.raises(CheckpointFormatError):
        dataclasses.replace(good, extensions=("",))
