"""Verifying RFC 6962 inclusion and consistency proofs.

Theory of operation
-------------------
A port of the reference verifier, transparency-dev/merkle ``proof/verify.go``, with the
same edge cases, so that a proof accepted here is accepted there and vice versa:

* a leaf index must be below the tree size;
* the proof must have exactly the length the sizes imply, no hash more or less;
* every proof hash, leaf hash and root that takes part in a computation is 32 bytes;
* a consistency proof needs ``size1 <= size2``; equal sizes need an empty proof and
  equal roots (compared as given, the way ``verify.go`` compares them);
* one deliberate difference: a consistency proof *from the empty tree* (``size1 == 0``)
  is refused.  Every tree extends the empty one, so such a "proof" checks nothing, and a
  caller who relies on it is almost certainly holding the wrong old checkpoint.  The
  project's vectors (``consistency/additional``) encode this rule.

The hash chaining splits a proof into an *inner* part (siblings below the level where
the leaf's path joins the tree's right edge, on either side depending on the index
bits) and a *border* part (left siblings along the right edge); see
:mod:`crypto.merkle.proof` for why.  A consistency proof is checked by chaining the same
hashes twice: once keeping only the left siblings, which must give the old root, and
once with all of them, which must give the new root.
"""

from __future__ import annotations

from collections.abc import Sequence

from crypto.merkle.errors import InvalidProofError, RootMismatchError
from crypto.merkle.hashing import HASH_BYTES, TREE_SIZE_MAX, node_hash

__all__ = ["root_from_inclusion_proof", "verify_consistency", "verify_inclusion"]


def root_from_inclusion_proof(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]
) -> bytes:
    """Return the root that ``proof`` leads to from leaf ``index`` of a tree of ``size``.

    Raises :class:`InvalidProofError` if the proof cannot be a proof for these
    parameters; never raises :class:`RootMismatchError`.
    """
    if not 0 <= index < size <= TREE_SIZE_MAX:
        raise InvalidProofError(f"leaf index {index} is not in a tree of size {size}")
    _check_hash("leaf hash", leaf_hash)
    inner, border = _decompose(index, size)
    if len(proof) != inner + border:
        raise InvalidProofError(
            f"inclusion proof has {len(proof)} hashes, expected {inner + border}"
        )
    _check_proof_hashes(proof)
    result = _chain_inner(leaf_hash, proof[:inner], index)
    return _chain_border_right(result, proof[inner:])


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that leaf ``index`` with hash ``leaf_hash`` is in the tree of ``size`` with
    root ``root``; raise a :class:`~crypto.merkle.errors.ProofError` if not.
    """
    _check_hash("root", root)
    calculated = root_from_inclusion_proof(index, size, leaf_hash, proof)
    _verify_match(calculated=calculated, expected=root)


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree of ``size1`` with ``root1`` is a prefix of the tree of ``size2``
    with ``root2``; raise a :class:`~crypto.merkle.errors.ProofError` if not.
    """
    if not 0 <= size1 <= size2 <= TREE_SIZE_MAX:
        raise InvalidProofError(f"no consistency from size {size1} to size {size2}")
    if size1 == 0:
        raise InvalidProofError("a consistency proof from the empty tree proves nothing")
    if size1 == size2:
        if proof:
            raise InvalidProofError(f"sizes are equal but the proof has {len(proof)} hashes")
        _verify_match(calculated=root1, expected=root2)
        return
    if not proof:
        raise InvalidProofError("empty consistency proof between different sizes")
    _check_hash("root1", root1)
    _check_hash("root2", root2)

    # The proof is a suffix of the inclusion proof of leaf size1-1 in the tree of size2,
    # starting at the level of the largest perfect subtree ending at size1.
    inner, border = _decompose(size1 - 1, size2)
    shift = (size1 & -size1).bit_length() - 1
    inner -= shift
    if size1 == 1 << shift:
        # size1 is a power of two: that subtree is the whole old tree, the caller has it.
        seed, start = root1, 0
    else:
        seed, start = proof[0], 1
    if len(proof) != start + inner + border:
        raise InvalidProofError(
            f"consistency proof has {len(proof)} hashes, expected {start + inner + border}"
        )
    _check_proof_hashes(proof)
    path = proof[start:]
    mask = (size1 - 1) >> shift

    hash1 = _chain_inner_right(seed, path[:inner], mask)
    hash1 = _chain_border_right(hash1, path[inner:])
    _verify_match(calculated=hash1, expected=root1)

    hash2 = _chain_inner(seed, path[:inner], mask)
    hash2 = _chain_border_right(hash2, path[inner:])
    _verify_match(calculated=hash2, expected=root2)


def _decompose(index: int, size: int) -> tuple[int, int]:
    """Return the (inner, border) lengths of the inclusion proof of ``index`` in ``size``."""
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner, border


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for height, sibling in enumerate(proof):
        # A 1 bit means the path node is a right child: its sibling goes on the left.
        is_right = (index >> height) & 1
        seed = node_hash(sibling, seed) if is_right else node_hash(seed, sibling)
    return seed


def _chain_inner_right(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    # Only left siblings existed in the old tree; right ones were appended later.
    for height, sibling in enumerate(proof):
        if (index >> height) & 1:
            seed = node_hash(sibling, seed)
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    for sibling in proof:
        seed = node_hash(sibling, seed)
    return seed


def _verify_match(*, calculated: bytes, expected: bytes) -> None:
    if calculated != expected:
        raise RootMismatchError(expected=expected, calculated=calculated)


def _check_hash(name: str, value: bytes) -> None:
    if len(value) != HASH_BYTES:
        raise InvalidProofError(f"{name} is {len(value)} bytes, expected {HASH_BYTES}")


def _check_proof_hashes(proof: Sequence[bytes]) -> None:
    for position, value in enumerate(proof):
        _check_hash(f"proof hash {position}", value)
