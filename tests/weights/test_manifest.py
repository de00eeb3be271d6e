"""Manifests of checkpoint directories: hashes, the cache, what is never listed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from vramancer_node.weights import manifest as manifest_module
from vramancer_node.weights.manifest import compute_manifest


def test_manifest_hashes_once_and_rehashes_what_changed(
    tmp_path: Path, monkeypatch: object
) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "a.bin").write_bytes(b"alpha")
    (model / "b.bin").write_bytes(b"beta")
    (model / ".a.bin.part").write_bytes(b"partial")
    (model / "sub").mkdir()
    (model / "link.bin").symlink_to(model / "a.bin")
    cache = tmp_path / "cache" / "m"
    hashed: list[str] = []
    real = manifest_module.sha256_file

    def counting(path: Path, **kwargs: object) -> bytes:
        hashed.append(path.name)
        return real(path)

    monkeypatch.setattr(manifest_module, "sha256_file", counting)  # type: ignore[attr-defined]
    first = compute_manifest("m", model, cache)
    assert [(e.name, e.size_bytes) for e in first.files] == [
        ("a.bin", 5), ("b.bin", 4), ("link.bin", 5)
    ]  # fmt: skip
    assert first.file("b.bin").sha256 == hashlib.sha256(b"beta").digest()  # type: ignore[union-attr]
    assert sorted(hashed) == ["a.bin", "b.bin", "link.bin"]
    hashed.clear()
    assert compute_manifest("m", model, cache) == first
    assert hashed == []  # all from the cache
    (model / "b.bin").write_bytes(b"BETA!")
    stat = (model / "a.bin").stat()
    os.utime(model / "b.bin", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    changed = compute_manifest("m", model, cache)
    assert hashed == ["b.bin"]
    assert changed.file("b.bin").sha256 == hashlib.sha256(b"BETA!").digest()  # type: ignore[union-attr]
    cache.write_bytes(b"garbage")  # a broken cache is rebuilt, not trusted
    assert compute_manifest("m", model, cache) == changed
