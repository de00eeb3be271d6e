"""vramancer_node.identity: the key file on disk."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from crypto.identity import encode_key_file, generate_identity
from vramancer_node.identity import (
    IdentityFileError,
    create_identity,
    key_path,
    load_identity,
    load_or_create_identity,
)


def test_created_key_is_0600_even_with_umask_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("the key file must be 0600 from creation; chmod is forbidden")

    monkeypatch.setattr(os, "chmod", refuse)
    monkeypatch.setattr(os, "fchmod", refuse)
    old = os.umask(0)
    try:
        identity = create_identity(tmp_path / "state")
    finally:
        os.umask(old)
    path = key_path(tmp_path / "state")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    assert load_identity(tmp_path / "state").public_key == identity.public_key


def test_load_or_create_is_stable(tmp_path: Path) -> None:
    first, created = load_or_create_identity(tmp_path)
    again, created_again = load_or_create_identity(tmp_path)
    assert created and not created_again
    assert first.node_id == again.node_id


def test_create_refuses_to_replace_an_existing_key(tmp_path: Path) -> None:
    create_identity(tmp_path)
    before = key_path(tmp_path).read_bytes()
    with pytest.raises(IdentityFileError, match="exists already"):
        create_identity(tmp_path)
    assert key_path(tmp_path).read_bytes() == before


def test_key_readable_by_others_is_refused_not_fixed(tmp_path: Path) -> None:
    create_identity(tmp_path)
    path = key_path(tmp_path)
    path.chmod(0o644)
    with pytest.raises(IdentityFileError, match="mode 0644"):
        load_identity(tmp_path)
    with pytest.raises(IdentityFileError, match="mode 0644"):
        load_or_create_identity(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # we never chmod it ourselves


def test_corrupt_key_is_an_error_and_never_replaced(tmp_path: Path) -> None:
    create_identity(tmp_path)
    path = key_path(tmp_path)
    path.write_bytes(b"garbage")
    with pytest.raises(IdentityFileError, match="VRMKEY1 header"):
        load_or_create_identity(tmp_path)
    assert path.read_bytes() == b"garbage"


def test_symlinked_key_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere.key"
    fd = os.open(real, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, encode_key_file(generate_identity()))
    os.close(fd)
    key_path(tmp_path).symlink_to(real)
    with pytest.raises(IdentityFileError, match="cannot open key file"):
        load_identity(tmp_path)


def test_missing_identity_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(IdentityFileError, match="identity init"):
        load_identity(tmp_path)


def test_sealed_key_round_trip_on_disk(tmp_path: Path) -> None:
    identity = create_identity(tmp_path, b"s3cret")
    assert b"s3cret" not in key_path(tmp_path).read_bytes()
    assert load_identity(tmp_path, b"s3cret").node_id == identity.node_id
    with pytest.raises(IdentityFileError, match="passphrase is required"):
        load_identity(tmp_path)
    with pytest.raises(IdentityFileError, match="does not open"):
        load_identity(tmp_path, b"nope")
