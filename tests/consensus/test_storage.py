"""The LMDB Raft store: the Ready order (snapshot replaces the log, entries replace a
suffix, hard state), compaction, restart, and a SIGKILL in the middle of writing that
loses nothing acknowledged."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import lmdb
import pytest

from protocol.raft import ConfState, Entry, EntryKind, HardState, RaftConfig, RaftNode, Snapshot
from protocol.raft.entries import check_persistent_state
from vramancer_node.consensus.storage import ConsensusStoreError, RaftStorage, consensus_dir

CONF = ConfState.of(["a"])


def entry(index: int, term: int, data: bytes = b"x") -> Entry:
    return Entry(index=index, term=term, kind=EntryKind.NORMAL, data=data)


def test_a_new_store_holds_nothing(state_dir: Path) -> None:
    store = RaftStorage.open(state_dir)
    try:
        assert store.load() is None
        assert store.applied_index() == 0
    finally:
        store.close()
    mode = consensus_dir(state_dir).stat().st_mode & 0o777
    assert mode == 0o700


def test_ready_order_and_restart(state_dir: Path) -> None:
    store = RaftStorage.open(state_dir)
    snapshot = Snapshot(index=1, term=1, conf=CONF, data=b"")
    store.save(snapshot=snapshot, hard_state=HardState(term=1, vote=None, commit=1))
    store.save(
        entries=[entry(2, 2), entry(3, 2), entry(4, 2)],
        hard_state=HardState(term=2, vote="a", commit=3),
    )
    # A new leader's entries replace the suffix from index 3 on.
    store.save(entries=[entry(3, 3, b"y")], hard_state=HardState(term=3, vote=None, commit=3))
    store.set_applied_index(3)
    store.close()

    store = RaftStorage.open(state_dir)
    try:
        state = store.load()
        assert state is not None
        check_persistent_state(state)
        assert state.snapshot == snapshot
        assert state.entries == (entry(2, 2), entry(3, 3, b"y"))
        assert state.hard_state == HardState(term=3, vote=None, commit=3)
        assert store.applied_index() == 3
        # The core restarts from it.
        node = RaftNode("a", RaftConfig(), state, random.Random(1))
        assert (node.term, node.log.last_index, node.log.committed) == (3, 3, 3)
    finally:
        store.close()


def test_snapshots_replace_or_compact_the_log(state_dir: Path) -> None:
    store = RaftStorage.open(state_dir)
    try:
        store.save(
            snapshot=Snapshot(index=1, term=1, conf=CONF, data=b""),
            entries=[entry(i, 1) for i in range(2, 8)],
            hard_state=HardState(term=1, vote=None, commit=7),
        )
        local = Snapshot(index=5, term=1, conf=CONF, data=b"state@5")
        store.compact(local)
        state = store.load()
        assert state is not None and state.snapshot == local
        assert [e.index for e in state.entries] == [6, 7]
        from_leader = Snapshot(index=9, term=2, conf=CONF, data=b"state@9")
        store.save(snapshot=from_leader, hard_state=HardState(term=2, vote=None, commit=9))
        state = store.load()
        assert state is not None and state.snapshot == from_leader and state.entries == ()
        check_persistent_state(state)
    finally:
        store.close()


def test_a_store_of_another_format_is_refused(state_dir: Path) -> None:
    RaftStorage.open(state_dir).close()
    env = lmdb.open(str(consensus_dir(state_dir)), max_dbs=2)
    with env.begin(write=True) as txn:
        txn.put(b"format", b"99", db=env.open_db(b"meta", txn=txn))
    env.close()
    with pytest.raises(ConsensusStoreError, match="format"):
        RaftStorage.open(state_dir)


def test_a_corrupt_entry_is_reported_not_guessed(state_dir: Path) -> None:
    store = RaftStorage.open(state_dir)
    store.save(
        snapshot=Snapshot(index=1, term=1, conf=CONF, data=b""),
        entries=[entry(2, 1)],
        hard_state=HardState(term=1, vote=None, commit=1),
    )
    store.close()
    env = lmdb.open(str(consensus_dir(state_dir)), max_dbs=2)
    with env.begin(write=True) as txn:
        txn.put((2).to_bytes(8, "big"), b"\x01garbage", db=env.open_db(b"entries", txn=txn))
    env.close()
    store = RaftStorage.open(state_dir)
    try:
        with pytest.raises(ConsensusStoreError, match="unreadable"):
            store.load()
    finally:
        store.close()


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from protocol.raft import ConfState, Entry, EntryKind, HardState, Snapshot
    from vramancer_node.consensus.storage import RaftStorage

    store = RaftStorage.open(Path(sys.argv[1]))
    store.save(snapshot=Snapshot(index=1, term=1, conf=ConfState.of(["a"]), data=b""),
               hard_state=HardState(term=1, vote=None, commit=1))
    index = 1
    while True:
        entries = [Entry(index=index + k, term=2, kind=EntryKind.NORMAL, data=b"e" * 100)
                   for k in range(1, 4)]
        index += 3
        store.save(entries=entries, hard_state=HardState(term=2, vote="a", commit=index))
        print(index, flush=True)  # acknowledged: only now may a Raft message promise it
    """
)


def test_sigkill_while_writing_loses_nothing_acknowledged(state_dir: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(state_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert child.stdout is not None
    acknowledged = 0
    for line in child.stdout:
        if not line.endswith("\n"):
            break  # a kill can cut the last line short: only whole lines count
        acknowledged = int(line)
        if acknowledged >= 300:
            child.send_signal(signal.SIGKILL)
            break
    child.wait(timeout=30)
    for line in child.stdout:  # lines written before the kill landed
        if line.endswith("\n"):
            acknowledged = int(line)
    child.stdout.close()
    assert acknowledged >= 300
    store = RaftStorage.open(state_dir)
    try:
        state = store.load()
        assert state is not None
        check_persistent_state(state)
        assert state.entries[-1].index >= acknowledged
        assert state.hard_state.commit >= acknowledged
        assert [e.index for e in state.entries] == list(range(2, state.entries[-1].index + 1))
    finally:
        store.close()
