"""Unit and property tests of crypto.merkle.

The generated proofs are compared with a direct transcription of RFC 6962 section 2.1
(MTH, PATH, PROOF/SUBPROOF, recursive on lists of leaves), which shares no code and no
structure with the perfect-subtree implementation under test.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.merkle import (
    EMPTY_ROOT,
    HASH_BYTES,
    InvalidProofError,
    MemoryTree,
    MissingNodeError,
    OutOfRangeError,
    ProofError,
    RootMismatchError,
    SubtreeNode,
    append_nodes,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    perfect_subtrees,
    range_hash,
    root_from_inclusion_proof,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

SIZE_MAX = 300
PROPERTY = settings(max_examples=200, deadline=None, derandomize=True)


# --- RFC 6962 section 2.1, transcribed -------------------------------------------------


def _split(n: int) -> int:
    """The largest power of two smaller than n."""
    return 1 << ((n - 1).bit_length() - 1)


def rfc_mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = _split(len(leaves))
    return hashlib.sha256(b"\x01" + rfc_mth(leaves[:k]) + rfc_mth(leaves[k:])).digest()


def rfc_path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if m < k:
        return [*rfc_path(m, leaves[:k]), rfc_mth(leaves[k:])]
    return [*rfc_path(m - k, leaves[k:]), rfc_mth(leaves[:k])]


def rfc_subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [rfc_mth(leaves)]
    k = _split(n)
    if m <= k:
        return [*rfc_subproof(m, leaves[:k], complete), rfc_mth(leaves[k:])]
    return [*rfc_subproof(m - k, leaves[k:], False), rfc_mth(leaves[:k])]


def _leaves(size: int) -> list[bytes]:
    return [b"leaf %d" % index for index in range(size)]


def _flip(value: bytes, bit: int) -> bytes:
    bit %= len(value) * 8
    data = bytearray(value)
    data[bit // 8] ^= 1 << (bit % 8)
    return bytes(data)


class PerfectOnlyReader:
    """Wraps a tree and fails the test if anything but a complete subtree of the tree of
    ``size`` leaves is read; counts reads."""

    def __init__(self, tree: MemoryTree, size: int) -> None:
        self.tree = tree
        self.size = size
        self.reads = 0

    def subtree_hash(self, level: int, index: int) -> bytes:
        assert (index + 1) << level <= self.size, (level, index, self.size)
        self.reads += 1
        return self.tree.subtree_hash(level, index)


# --- hashing and roots -----------------------------------------------------------------


def test_hash_functions_use_rfc6962_prefixes() -> None:
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert (
        node_hash(b"L" * 32, b"R" * 32) == hashlib.sha256(b"\x01" + b"L" * 32 + b"R" * 32).digest()
    )
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert len(EMPTY_ROOT) == HASH_BYTES


@pytest.mark.parametrize("size", [*range(0, 70), 127, 128, 129, 255, 256, 257])
def test_root_matches_rfc_definition(size: int) -> None:
    leaves = _leaves(size)
    tree = MemoryTree(leaves)
    assert tree.root() == rfc_mth(leaves)
    assert root_hash(size, PerfectOnlyReader(tree, size)) == rfc_mth(leaves)


def test_roots_of_past_sizes_do_not_change() -> None:
    leaves = _leaves(40)
    tree = MemoryTree(leaves)
    for size in range(41):
        assert tree.root(size) == rfc_mth(leaves[:size])


def test_root_reads_are_logarithmic() -> None:
    size = (1 << 20) - 1  # twenty perfect subtrees, the worst case below 2**20
    tree = MemoryTree(_leaves(size))
    reader = PerfectOnlyReader(tree, size)
    root_hash(size, reader)
    assert reader.reads == 20


# --- append_nodes and perfect subtrees -------------------------------------------------


def test_append_nodes_returns_the_completed_subtrees() -> None:
    tree = MemoryTree(_leaves(7))
    new_leaf = leaf_hash(b"leaf 7")
    nodes = append_nodes(7, new_leaf, tree)
    assert [(node.level, node.index) for node in nodes] == [(0, 7), (1, 3), (2, 1), (3, 0)]
    assert nodes[0] == SubtreeNode(0, 7, new_leaf)
    assert nodes[-1].hash == rfc_mth(_leaves(8))
    # An even index completes nothing above the leaf.
    assert [(n.level, n.index) for n in append_nodes(8, new_leaf, MemoryTree(_leaves(8)))] == [
        (0, 8)
    ]


def test_append_nodes_reads_only_left_siblings_and_detects_a_store_gap() -> None:
    with pytest.raises(MissingNodeError) as info:
        append_nodes(3, leaf_hash(b"x"), MemoryTree(_leaves(1)))
    assert (info.value.level, info.value.index) == (0, 2)


def test_append_nodes_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        append_nodes(0, b"short", MemoryTree())
    with pytest.raises(OutOfRangeError):
        append_nodes(-1, leaf_hash(b""), MemoryTree())


@pytest.mark.parametrize(
    ("begin", "end", "expected"),
    [
        (0, 0, []),
        (0, 1, [(0, 0)]),
        (0, 13, [(3, 0), (2, 2), (0, 12)]),
        (4, 7, [(1, 2), (0, 6)]),
        (3, 9, [(0, 3), (2, 1), (0, 8)]),
    ],
)
def test_perfect_subtrees(begin: int, end: int, expected: list[tuple[int, int]]) -> None:
    assert perfect_subtrees(begin, end) == expected


def test_range_hash_refuses_ranges_that_are_not_rfc6962_subtrees() -> None:
    tree = MemoryTree(_leaves(16))
    assert range_hash(8, 13, tree) == rfc_mth(_leaves(13)[8:])
    with pytest.raises(OutOfRangeError):
        range_hash(3, 9, tree)
    with pytest.raises(OutOfRangeError):
        range_hash(4, 4, tree)


def test_memory_tree_lookups_out_of_range() -> None:
    tree = MemoryTree(_leaves(5))
    with pytest.raises(MissingNodeError):
        tree.subtree_hash(1, 2)
    with pytest.raises(OutOfRangeError):
        tree.leaf_hash(5)
    with pytest.raises(OutOfRangeError):
        tree.root(6)
    with pytest.raises(OutOfRangeError):
        tree.inclusion_proof(0, 6)


# --- generation: exact agreement with RFC 6962 -----------------------------------------


@pytest.mark.parametrize("size", range(1, 40))
def test_inclusion_proofs_equal_rfc_path(size: int) -> None:
    leaves = _leaves(size)
    tree = MemoryTree(_leaves(size + 5))  # a larger tree: proofs for a past size
    for index in range(size):
        reader = PerfectOnlyReader(tree, size)
        assert inclusion_proof(index, size, reader) == rfc_path(index, leaves)


@pytest.mark.parametrize("size2", range(1, 40))
def test_consistency_proofs_equal_rfc_proof(size2: int) -> None:
    leaves = _leaves(size2)
    tree = MemoryTree(_leaves(size2 + 3))
    for size1 in range(1, size2 + 1):
        reader = PerfectOnlyReader(tree, size2)
        expected = rfc_subproof(size1, leaves, True)
        assert consistency_proof(size1, size2, reader) == expected


@pytest.mark.parametrize(
    ("size1", "size2"), [(0, 0), (0, 5), (6, 5), (-1, 3)], ids=lambda value: str(value)
)
def test_consistency_generation_refuses_bad_sizes(size1: int, size2: int) -> None:
    with pytest.raises(OutOfRangeError):
        consistency_proof(size1, size2, MemoryTree(_leaves(8)))


@pytest.mark.parametrize(("index", "size"), [(0, 0), (5, 5), (-1, 5)])
def test_inclusion_generation_refuses_bad_positions(index: int, size: int) -> None:
    with pytest.raises(OutOfRangeError):
        inclusion_proof(index, size, MemoryTree(_leaves(8)))


# --- verification edge cases -----------------------------------------------------------


def test_inclusion_verification_errors_are_specific() -> None:
    tree = MemoryTree(_leaves(10))
    proof, root, leaf = tree.inclusion_proof(3), tree.root(), tree.leaf_hash(3)
    verify_inclusion(3, 10, leaf, proof, root)
    with pytest.raises(RootMismatchError) as info:
        verify_inclusion(3, 10, leaf, proof, tree.root(9))
    assert info.value.expected == tree.root(9)
    assert info.value.calculated == root
    with pytest.raises(InvalidProofError, match="index"):
        verify_inclusion(10, 10, leaf, proof, root)
    with pytest.raises(InvalidProofError, match="expected 4"):
        verify_inclusion(3, 10, leaf, [*proof, proof[0]], root)
    with pytest.raises(InvalidProofError, match="proof hash 1"):
        verify_inclusion(3, 10, leaf, [proof[0], proof[1] + b"\x00", *proof[2:]], root)
    with pytest.raises(InvalidProofError, match="leaf hash"):
        verify_inclusion(3, 10, leaf[:31], proof, root)
    with pytest.raises(InvalidProofError, match="root"):
        verify_inclusion(3, 10, leaf, proof, root + b"\x00")


def test_consistency_verification_errors_are_specific() -> None:
    tree = MemoryTree(_leaves(10))
    proof = tree.consistency_proof(6)
    verify_consistency(6, 10, proof, tree.root(6), tree.root())
    with pytest.raises(InvalidProofError, match="empty tree"):
        verify_consistency(0, 10, [], EMPTY_ROOT, tree.root())
    with pytest.raises(InvalidProofError):
        verify_consistency(10, 6, proof, tree.root(), tree.root(6))
    with pytest.raises(InvalidProofError, match="equal"):
        verify_consistency(6, 6, proof, tree.root(6), tree.root(6))
    with pytest.raises(RootMismatchError):
        verify_consistency(6, 6, [], tree.root(6), tree.root(7))
    with pytest.raises(InvalidProofError, match="empty"):
        verify_consistency(6, 10, [], tree.root(6), tree.root())
    with pytest.raises(RootMismatchError):
        verify_consistency(6, 10, proof, tree.root(5), tree.root())
    with pytest.raises(RootMismatchError):
        verify_consistency(6, 10, proof, tree.root(6), tree.root(9))


# --- properties ------------------------------------------------------------------------

sizes = st.integers(min_value=1, max_value=SIZE_MAX)


@PROPERTY
@given(size=sizes, data=st.data())
def test_property_inclusion_proofs_verify_and_any_flipped_bit_is_rejected(
    size: int, data: st.DataObject
) -> None:
    tree = MemoryTree(_leaves(size))
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    proof, root, leaf = tree.inclusion_proof(index), tree.root(), tree.leaf_hash(index)
    verify_inclusion(index, size, leaf, proof, root)
    assert root_from_inclusion_proof(index, size, leaf, proof) == root

    # One bit anywhere: in a proof hash, in the leaf hash, or in the root.
    targets = len(proof) + 2
    target = data.draw(st.integers(min_value=0, max_value=targets - 1), label="target")
    bit = data.draw(st.integers(min_value=0, max_value=HASH_BYTES * 8 - 1), label="bit")
    if target < len(proof):
        proof = [*proof[:target], _flip(proof[target], bit), *proof[target + 1 :]]
    elif target == len(proof):
        leaf = _flip(leaf, bit)
    else:
        root = _flip(root, bit)
    with pytest.raises(ProofError):
        verify_inclusion(index, size, leaf, proof, root)


@PROPERTY
@given(size2=sizes, data=st.data())
def test_property_consistency_proofs_verify_and_any_flipped_bit_is_rejected(
    size2: int, data: st.DataObject
) -> None:
    tree = MemoryTree(_leaves(size2))
    size1 = data.draw(st.integers(min_value=1, max_value=size2), label="size1")
    proof, root1, root2 = tree.consistency_proof(size1), tree.root(size1), tree.root()
    verify_consistency(size1, size2, proof, root1, root2)

    targets = len(proof) + 2
    target = data.draw(st.integers(min_value=0, max_value=targets - 1), label="target")
    bit = data.draw(st.integers(min_value=0, max_value=HASH_BYTES * 8 - 1), label="bit")
    if target < len(proof):
        proof = [*proof[:target], _flip(proof[target], bit), *proof[target + 1 :]]
    elif target == len(proof):
        root1 = _flip(root1, bit)
    else:
        root2 = _flip(root2, bit)
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, proof, root1, root2)


@PROPERTY
@given(size=sizes, data=st.data())
def test_property_proofs_do_not_verify_for_other_positions(size: int, data: st.DataObject) -> None:
    """A proof is bound to its index and sizes, not only to its hashes."""
    tree = MemoryTree(_leaves(size + 1))
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    other = data.draw(st.integers(min_value=0, max_value=size - 1), label="other")
    proof = tree.inclusion_proof(index, size)
    if other != index:
        with pytest.raises(ProofError):
            verify_inclusion(other, size, tree.leaf_hash(index), proof, tree.root(size))
    with pytest.raises(ProofError):
        verify_inclusion(index, size + 1, tree.leaf_hash(index), proof, tree.root(size + 1))


@PROPERTY
@given(size=st.integers(min_value=1, max_value=1 << 40), data=st.data())
def test_property_huge_trees_need_only_perfect_subtrees(size: int, data: st.DataObject) -> None:
    """Roots and proofs of trees far too big to build.  Every leaf holds the same data,
    so a perfect subtree's hash depends on its level only and the reader can serve any
    of them cheaply; the reader fails the test if asked for anything else."""
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    size1 = data.draw(st.integers(min_value=1, max_value=size), label="size1")
    level_hashes = [leaf_hash(b"same")]
    for _ in range(size.bit_length()):
        level_hashes.append(node_hash(level_hashes[-1], level_hashes[-1]))

    class Uniform:
        def subtree_hash(self, level: int, position: int) -> bytes:
            assert (position + 1) << level <= size
            return level_hashes[level]

    reader = Uniform()
    root = root_hash(size, reader)
    proof = inclusion_proof(index, size, reader)
    assert len(proof) <= 2 * size.bit_length()
    verify_inclusion(index, size, level_hashes[0], proof, root)
    proof = consistency_proof(size1, size, reader)
    assert len(proof) <= 2 * size.bit_length() + 1
    verify_consistency(size1, size, proof, root_hash(size1, reader), root)
