"""Choosing each file's version by majority and its sources."""

from __future__ import annotations

import hashlib

import pytest

from protocol.weights import FileEntry, Manifest
from vramancer_node.weights.errors import NoSourceError
from vramancer_node.weights.sources import plan_files


def entry(name: str, content: bytes) -> FileEntry:
    return FileEntry(name=name, size_bytes=len(content), sha256=hashlib.sha256(content).digest())


def manifest(*entries: FileEntry) -> Manifest:
    return Manifest(model_id="m", files=tuple(sorted(entries, key=lambda e: e.name)))


def test_the_majority_version_and_only_its_holders() -> None:
    good, rotten = entry("w.bin", b"good"), entry("w.bin", b"r0tt")
    config = entry("config.json", b"{}")
    manifests = {
        "a:1": manifest(rotten, config),
        "b:1": manifest(good, config),
        "c:1": manifest(good),
    }
    plans = plan_files("m", manifests)
    assert [(p.entry, p.sources) for p in plans] == [
        (config, ("a:1", "b:1")),
        (good, ("b:1", "c:1")),
    ]
    assert [p.entry.name for p in plan_files("m", manifests, ["w.bin"])] == ["w.bin"]


def test_ties_are_broken_the_same_everywhere() -> None:
    one, two = entry("w.bin", b"one"), entry("w.bin", b"two")
    first = plan_files("m", {"a:1": manifest(one), "b:1": manifest(two)})
    second = plan_files("m", {"b:1": manifest(two), "a:1": manifest(one)})
    assert first[0].entry == second[0].entry == min(one, two, key=lambda e: e.sha256)


def test_a_file_nobody_has() -> None:
    with pytest.raises(NoSourceError, match=r"m/missing\.bin"):
        plan_files("m", {"a:1": manifest(entry("w.bin", b""))}, ["missing.bin"])
