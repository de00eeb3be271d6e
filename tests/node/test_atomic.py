"""vramancer_node.atomic: the one way state files are written."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from vramancer_node import atomic
from vramancer_node.atomic import atomic_write


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def no_umask():
    """Umask 0, so any 0600 we observe comes from the creation mode, not the umask."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def forbid_chmod(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("state files must get their mode at creation, never via chmod")

    monkeypatch.setattr(os, "chmod", refuse)
    monkeypatch.setattr(os, "fchmod", refuse)


def test_writes_bytes_with_mode_0600_from_creation(
    tmp_path: Path, no_umask: None, forbid_chmod: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen_modes: list[int] = []
    real_fsync = os.fsync

    def spying_fsync(fd: int) -> None:
        st_ = os.fstat(fd)
        if stat.S_ISREG(st_.st_mode):  # the temp file, before it gets its final name
            seen_modes.append(stat.S_IMODE(st_.st_mode))
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", spying_fsync)
    target = tmp_path / "state.bin"
    atomic_write(target, b"hello")
    assert target.read_bytes() == b"hello"
    assert _mode(target) == 0o600
    assert seen_modes == [0o600]


def test_replaces_atomically_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "state.bin"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.bin"]


def test_exclusive_never_replaces(tmp_path: Path) -> None:
    target = tmp_path / "node.key"
    atomic_write(target, b"first", exclusive=True)
    with pytest.raises(FileExistsError):
        atomic_write(target, b"second", exclusive=True)
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.key"]


def test_failure_before_rename_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "state.bin"
    atomic_write(target, b"old")

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(atomic.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="Input/output"):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.bin"]


def test_directory_is_fsynced_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_replace, real_fsync_dir = os.replace, atomic.fsync_directory
    monkeypatch.setattr(
        atomic.os, "replace", lambda a, b: (events.append("rename"), real_replace(a, b))
    )
    monkeypatch.setattr(
        atomic, "fsync_directory", lambda d: (events.append(f"fsync-dir {d}"), real_fsync_dir(d))
    )
    atomic_write(tmp_path / "x", b"1")
    assert events == ["rename", f"fsync-dir {tmp_path}"]
