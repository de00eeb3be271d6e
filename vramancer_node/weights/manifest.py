"""Content manifests of checkpoint directories: each file's name, size and SHA-256.

Theory of operation
-------------------
:func:`scan` lists a checkpoint directory's servable files: regular files (symlinks
followed, as in a Hugging Face cache snapshot) directly in the directory, whose names
pass :func:`protocol.weights.file_name_problem` (no hidden or partial files).
Subdirectories are not part of a checkpoint here.

Hashing a 70B checkpoint reads ~140 GB, so a manifest is computed once and cached in
the state directory (``<state-dir>/weights/manifests/<model-id>``, written with
:func:`vramancer_node.atomic.atomic_write`).  The cache records each file's size and
modification time in nanoseconds; a file whose size or mtime changed is hashed again,
the others are taken from the cache.  Everything here blocks: callers run it in a
worker thread.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import msgpack

from protocol.errors import RemoteProtocolError
from protocol.weights import (
    FileEntry,
    Manifest,
    decode_manifest,
    encode_manifest,
    file_name_problem,
)
from vramancer_node.atomic import atomic_write

HASH_CHUNK_BYTES = 1 << 20
CACHE_VERSION = 1
CACHE_BYTES_MAX = 4 << 20


@dataclass(frozen=True)
class FileStat:
    size_bytes: int
    mtime_ns: int


def sha256_file(path: Path, *, limit_bytes: int | None = None) -> bytes:
    """SHA-256 of a file (of its first ``limit_bytes`` when given)."""
    digest = hashlib.sha256()
    remaining = limit_bytes
    with path.open("rb") as file:
        while remaining is None or remaining > 0:
            want = HASH_CHUNK_BYTES if remaining is None else min(HASH_CHUNK_BYTES, remaining)
            block = file.read(want)
            if not block:
                break
            digest.update(block)
            if remaining is not None:
                remaining -= len(block)
    return digest.digest()


def scan(directory: Path) -> dict[str, FileStat]:
    """The servable files of ``directory`` with their size and mtime."""
    found: dict[str, FileStat] = {}
    with os.scandir(directory) as entries:
        for entry in entries:
            if file_name_problem(entry.name) is not None or not entry.is_file():
                continue
            stat = entry.stat()  # follows symlinks
            found[entry.name] = FileStat(stat.st_size, stat.st_mtime_ns)
    return found


def _read_cache(path: Path) -> tuple[Manifest, dict[str, FileStat]] | None:
    try:
        data = path.read_bytes()
        if len(data) > CACHE_BYTES_MAX:
            return None
        raw = msgpack.unpackb(data, raw=False, strict_map_key=True)
        if not isinstance(raw, dict) or raw.get("v") != CACHE_VERSION:
            return None
        manifest = decode_manifest(raw["manifest"])
        stats = {name: FileStat(size, mtime) for name, size, mtime in raw["stats"]}
    except (OSError, ValueError, TypeError, KeyError, RemoteProtocolError, msgpack.UnpackException):
        return None  # a missing or unreadable cache is rebuilt, never trusted
    return manifest, stats


def write_cache(path: Path, manifest: Manifest, stats: Mapping[str, FileStat]) -> None:
    """Remember ``manifest`` for files with these ``stats``."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    wire = {
        "v": CACHE_VERSION,
        "manifest": encode_manifest(manifest),
        "stats": [[name, s.size_bytes, s.mtime_ns] for name, s in sorted(stats.items())],
    }
    atomic_write(path, msgpack.packb(wire, use_bin_type=True))


def compute_manifest(model_id: str, directory: Path, cache_path: Path) -> Manifest:
    """The manifest of ``directory``, hashing only files the cache does not vouch for."""
    stats = scan(directory)
    cached = _read_cache(cache_path)
    known: dict[str, FileEntry] = {}
    if cached is not None and cached[0].model_id == model_id:
        manifest, cached_stats = cached
        known = {
            entry.name: entry
            for entry in manifest.files
            if cached_stats.get(entry.name) == stats.get(entry.name)
        }
    entries = []
    for name in sorted(stats):
        entry = known.get(name)
        if entry is None:
            entry = FileEntry(
                name=name,
                size_bytes=stats[name].size_bytes,
                sha256=sha256_file(directory / name),
            )
        entries.append(entry)
    manifest = Manifest(model_id=model_id, files=tuple(entries))
    if cached is None or cached[0] != manifest or cached[1] != stats:
        write_cache(cache_path, manifest, stats)
    return manifest
