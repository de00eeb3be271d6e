"""Conformance of crypto.merkle against the shared vectors.

* ``inclusion/*/*.json`` and ``consistency/*/*.json``: the transparency-dev/merkle
  verifier vectors (base64 fields); ``wantErr`` says whether the proof must be rejected.
* ``tree8.json``: the classic 8-leaf RFC 6962 tree and the root of every prefix.

The vectors live outside the repository, next to it; they are read in place.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from crypto.merkle import (
    MemoryTree,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "merkle"
INCLUSION_FILES = sorted((VECTORS / "inclusion").glob("*/*.json"))
CONSISTENCY_FILES = sorted((VECTORS / "consistency").glob("*/*.json"))
TREE8_FILE = VECTORS / "tree8.json"


def _ids(paths: list[Path]) -> list[str]:
    return [str(path.relative_to(VECTORS)) for path in paths]


def _load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _proof(vector: dict[str, Any]) -> list[bytes]:
    # The Go vectors serialise an empty proof as null.
    return [_b64(item) for item in vector["proof"] or []]


def _tree8() -> tuple[MemoryTree, dict[int, bytes]]:
    data = _load(TREE8_FILE)
    tree = MemoryTree(bytes.fromhex(leaf) for leaf in data["leaves_hex"])
    roots = {int(size): bytes.fromhex(root) for size, root in data["roots_hex"].items()}
    return tree, roots


def test_vectors_are_present() -> None:
    # Guard against a silent pass when the shared checkout is missing or moved.
    assert len(INCLUSION_FILES) >= 50
    assert len(CONSISTENCY_FILES) >= 50
    assert TREE8_FILE.is_file()


@pytest.mark.parametrize("path", INCLUSION_FILES, ids=_ids(INCLUSION_FILES))
def test_inclusion_vector(path: Path) -> None:
    vector = _load(path)
    args = (
        vector["leafIdx"],
        vector["treeSize"],
        _b64(vector["leafHash"]),
        _proof(vector),
        _b64(vector["root"]),
    )
    if vector["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", CONSISTENCY_FILES, ids=_ids(CONSISTENCY_FILES))
def test_consistency_vector(path: Path) -> None:
    vector = _load(path)
    args = (
        vector["size1"],
        vector["size2"],
        _proof(vector),
        _b64(vector["root1"]),
        _b64(vector["root2"]),
    )
    if vector["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


HAPPY_FILES = [path for path in INCLUSION_FILES + CONSISTENCY_FILES if path.stem == "happy-path"]


@pytest.mark.parametrize("path", HAPPY_FILES, ids=_ids(HAPPY_FILES))
def test_generated_proof_equals_vector(path: Path) -> None:
    """The happy-path vectors are proofs in the 8-leaf tree: we must generate the very
    same hashes, not merely some proof that verifies."""
    tree, roots = _tree8()
    vector = _load(path)
    if "leafIdx" in vector:
        size = vector["treeSize"]
        assert _b64(vector["root"]) == roots[size]
        assert _b64(vector["leafHash"]) == tree.leaf_hash(vector["leafIdx"])
        assert inclusion_proof(vector["leafIdx"], size, tree) == _proof(vector)
    else:
        assert _b64(vector["root1"]) == roots[vector["size1"]]
        assert _b64(vector["root2"]) == roots[vector["size2"]]
        assert consistency_proof(vector["size1"], vector["size2"], tree) == _proof(vector)


@pytest.mark.parametrize("size", range(9))
def test_tree8_prefix_root(size: int) -> None:
    tree, roots = _tree8()
    assert tree.root(size) == roots[size]
    # A tree built from only the prefix agrees with the prefix of the full tree.
    prefix = MemoryTree(bytes.fromhex(leaf) for leaf in _load(TREE8_FILE)["leaves_hex"][:size])
    assert prefix.root() == roots[size]


@pytest.mark.parametrize("size", range(1, 9))
def test_tree8_generated_proofs_verify_against_vector_roots(size: int) -> None:
    tree, roots = _tree8()
    leaves = [bytes.fromhex(leaf) for leaf in _load(TREE8_FILE)["leaves_hex"]]
    for index in range(size):
        proof = tree.inclusion_proof(index, size)
        verify_inclusion(index, size, leaf_hash(leaves[index]), proof, roots[size])
    for size1 in range(1, size + 1):
        proof = tree.consistency_proof(size1, size)
        verify_consistency(size1, size, proof, roots[size1], roots[size])
