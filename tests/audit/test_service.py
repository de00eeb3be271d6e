"""The trio audit service: durable appends, group commit, checkpoints, aggregation."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from crypto.audit import (
    Ed25519NoteVerifier,
    RecordFormatError,
    Value,
    open_checkpoint,
)
from crypto.merkle import verify_inclusion
from tests.audit.helpers import CLUSTER_ID, make_identity, verify_dir
from vramancer_node.audit import kinds
from vramancer_node.audit.errors import AuditClosedError, StoreFullError
from vramancer_node.audit.refused import REFUSED_ADDRESSES_MAX
from vramancer_node.audit.service import AuditService, AuditSettings
from vramancer_node.audit.store import MAP_SIZE_BYTES_MIN, open_readonly

WALL_CLOCK_S = 1_700_000_000.0


def make_service(state_dir: Path, **settings: object) -> AuditService:
    return AuditService(
        state_dir,
        make_identity(),
        CLUSTER_ID,
        settings=AuditSettings(**settings),  # type: ignore[arg-type]
        wall_clock=lambda: WALL_CLOCK_S,
    )


def token_used(number: int) -> dict[str, Value]:
    return {"token_id": f"token-{number}", "node_id": "node"}


async def test_append_returns_consecutive_seqs_of_durable_records(state_dir: Path) -> None:
    service = make_service(state_dir)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        seqs = [await service.append(kinds.TOKEN_USED, token_used(n)) for n in range(5)]
        assert seqs == [0, 1, 2, 3, 4]
        # Durable means readable by another opener right after the ack.
        tail = await service.tail(5)
        assert [r["seq"] for r in tail["records"]] == seqs
        assert tail["records"][0]["time_ms"] == int(WALL_CLOCK_S * 1000)
        assert tail["records"][0]["body"] == token_used(0)
        nursery.cancel_scope.cancel()


async def test_group_commit_groups_concurrent_appends(state_dir: Path) -> None:
    service = make_service(state_dir)
    appenders = 200
    seqs: list[int] = []

    async def append_one(number: int) -> None:
        seqs.append(await service.append(kinds.TOKEN_USED, token_used(number)))

    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        async with trio.open_nursery() as clients:
            for number in range(appenders):
                clients.start_soon(append_one, number)
        stats = service.stats()
        nursery.cancel_scope.cancel()
    assert sorted(seqs) == list(range(appenders))
    assert stats["records_total"] == appenders
    # One transaction (one fsync) per batch, not per record.
    assert stats["commits_total"] <= appenders // 10, stats
    assert verify_dir(state_dir).ok


async def test_batches_are_bounded(state_dir: Path) -> None:
    service = make_service(state_dir, batch_records_max=16)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        async with trio.open_nursery() as clients:
            for number in range(100):
                clients.start_soon(service.append, kinds.TOKEN_USED, token_used(number))
        stats = service.stats()
        nursery.cancel_scope.cancel()
    assert stats["records_total"] == 100
    assert 100 // 16 < stats["commits_total"] < 100


async def test_map_grows_from_a_tiny_initial_map(state_dir: Path) -> None:
    service = make_service(state_dir, map_size_bytes_initial=MAP_SIZE_BYTES_MIN)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        async with trio.open_nursery() as clients:
            for number in range(400):
                body = {"keys": [f"key-{number}", "x" * 500]}
                clients.start_soon(service.append, kinds.CONFIG_CHANGED, body)
        stats = service.stats()
        report = await service.verify()
        nursery.cancel_scope.cancel()
    assert stats["map_resizes_total"] >= 2
    assert stats["map_size_bytes"] == MAP_SIZE_BYTES_MIN << stats["map_resizes_total"]
    assert report.ok and report.records == 400


async def test_a_write_failure_fails_its_appenders_and_stops_the_service(
    state_dir: Path,
) -> None:
    service = make_service(
        state_dir,
        map_size_bytes_initial=MAP_SIZE_BYTES_MIN,
        map_size_bytes_max=MAP_SIZE_BYTES_MIN,
    )
    failures: list[BaseException] = []

    async def append_big(number: int) -> None:
        try:
            await service.append(kinds.CONFIG_CHANGED, {"keys": ["x" * 4000, str(number)]})
        except StoreFullError as exc:
            failures.append(exc)

    with pytest.RaisesGroup(StoreFullError, flatten_subgroups=True):
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            for number in range(40):
                nursery.start_soon(append_big, number)
    assert failures
    with pytest.raises(AuditClosedError):
        await service.append(kinds.TOKEN_USED, token_used(0))


async def test_bad_bodies_fail_their_caller_and_write_nothing(state_dir: Path) -> None:
    service = make_service(state_dir)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        with pytest.raises(ValueError, match="unknown audit record kind"):
            await service.append("made_up", {})
        with pytest.raises(ValueError, match="lacks model"):
            await service.append(kinds.INFERENCE_SERVED, {"who": "alice"})
        with pytest.raises(ValueError, match="unknown fields prompt"):
            await service.append(
                kinds.INFERENCE_SERVED, {"who": "alice", "model": "m", "prompt": "secret"}
            )
        with pytest.raises(RecordFormatError):
            await service.append(kinds.TOKEN_USED, {"token_id": 1.5, "node_id": "n"})  # type: ignore[dict-item]
        assert await service.append(kinds.INFERENCE_SERVED, {"who": "alice", "model": "m"}) == 0
        nursery.cancel_scope.cancel()


async def test_append_after_stop_is_refused(state_dir: Path) -> None:
    service = make_service(state_dir)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        await service.append(kinds.TOKEN_USED, token_used(0))
        nursery.cancel_scope.cancel()
    with pytest.raises(AuditClosedError):
        await service.append(kinds.TOKEN_USED, token_used(1))


async def test_shutdown_commits_what_was_queued_and_checkpoints(state_dir: Path) -> None:
    service = make_service(state_dir)
    outcomes: list[int | str] = []

    async def append_one(number: int) -> None:
        try:
            outcomes.append(await service.append(kinds.TOKEN_USED, token_used(number)))
        except AuditClosedError:
            outcomes.append("closed")

    async with trio.open_nursery() as outer, trio.open_nursery() as nursery:
        await nursery.start(service.run)
        for number in range(50):
            outer.start_soon(append_one, number)
        await trio.sleep(0)  # the appenders queue up
        nursery.cancel_scope.cancel()
    acked = sorted(o for o in outcomes if isinstance(o, int))
    assert len(outcomes) == 50
    report = verify_dir(state_dir)
    assert report.ok
    assert acked == list(range(len(acked)))
    assert report.records >= len(acked)
    assert report.checkpoint_size == report.records  # the last checkpoint covers all


async def test_checkpoint_every_n_records(state_dir: Path) -> None:
    service = make_service(state_dir, checkpoint_every_records=10, checkpoint_interval_s=3600)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        for number in range(25):
            await service.append(kinds.TOKEN_USED, token_used(number))
        await trio.testing.wait_all_tasks_blocked()
        # Writer jobs run in order: once this append is durable, so is any checkpoint
        # the checkpoint task had submitted before it.
        await service.append(kinds.TOKEN_USED, token_used(25))
        latest = await service.latest_checkpoint()
        nursery.cancel_scope.cancel()
    assert latest is not None and latest.size >= 20


# The clocks below never autojump: time would race ahead while the writer thread works.


async def test_checkpoint_after_the_interval(state_dir: Path, mock_clock: MockClock) -> None:
    service = make_service(state_dir, checkpoint_interval_s=5)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        await trio.testing.wait_all_tasks_blocked()  # its tasks are sleeping now
        for number in range(3):
            await service.append(kinds.TOKEN_USED, token_used(number))
        mock_clock.jump(4)
        await trio.testing.wait_all_tasks_blocked()
        assert await service.latest_checkpoint() is None
        mock_clock.jump(2)
        await trio.testing.wait_all_tasks_blocked()
        await service.append(kinds.TOKEN_USED, token_used(3))  # ordered after the job
        latest = await service.latest_checkpoint()
        nursery.cancel_scope.cancel()
    assert latest is not None and latest.size == 3


async def test_refused_handshakes_are_aggregated(state_dir: Path, mock_clock: MockClock) -> None:
    service = make_service(state_dir, refused_interval_s=60, checkpoint_interval_s=3600)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        await trio.testing.wait_all_tasks_blocked()  # its tasks are sleeping now
        for number in range(300):
            reason = ("bad certificate", "revoked", "timeout")[number % 3]
            service.note_refused_handshake(reason, f"10.0.0.{number % 40}")
        mock_clock.jump(61)
        await trio.testing.wait_all_tasks_blocked()
        await service.append(kinds.TOKEN_USED, token_used(0))  # ordered after the flush
        for _ in range(2):  # nothing new: no more records
            mock_clock.jump(61)
            await trio.testing.wait_all_tasks_blocked()
        tail = await service.tail(10)
        nursery.cancel_scope.cancel()
    refused = [r for r in tail["records"] if r["kind"] == kinds.HANDSHAKE_REFUSED]
    assert [r["body"]["reason"] for r in refused] == ["bad certificate", "revoked", "timeout"]
    for record in refused:
        body = record["body"]
        assert body["count"] == 100
        assert len(body["addresses"]) == REFUSED_ADDRESSES_MAX
        assert body["addresses_omitted"] > 0
        assert body["interval_s"] == 60
    assert len(tail["records"]) == 4


async def test_proof_is_an_inclusion_proof_against_a_signed_checkpoint(state_dir: Path) -> None:
    service = make_service(state_dir)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        for number in range(11):
            await service.append(kinds.TOKEN_USED, token_used(number))
        proof = await service.proof(6)  # signs the first checkpoint on demand
        with pytest.raises(LookupError):
            await service.proof(11)
        nursery.cancel_scope.cancel()
    assert proof["schema"] == "vramancer.audit.proof.v1"
    assert proof["tree_size"] == 11
    verifier = Ed25519NoteVerifier(name=service.origin, public_key=service.identity.public_key)
    checkpoint = open_checkpoint(proof["checkpoint"], [verifier]).checkpoint
    assert checkpoint.root_hash.hex() == proof["root_hash"]
    path = [bytes.fromhex(node) for node in proof["inclusion_proof"]]
    leaf = bytes.fromhex(proof["leaf_hash"])
    verify_inclusion(6, 11, leaf, path, checkpoint.root_hash)


async def test_a_restarted_service_continues_the_log(state_dir: Path) -> None:
    for run in range(3):
        service = make_service(state_dir)
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            assert await service.append(kinds.TOKEN_USED, token_used(run)) == run
            nursery.cancel_scope.cancel()
    report = verify_dir(state_dir)
    assert report.ok and report.records == 3 and report.checkpoints == 3
    with open_readonly(state_dir) as reader, reader.view() as view:
        assert view.meta().origin == service.origin


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="batch_records_max"):
        AuditSettings(batch_records_max=0)
    with pytest.raises(ValueError, match="checkpoint_interval_s"):
        AuditSettings(checkpoint_interval_s=0)
    with pytest.raises(ValueError, match="map sizes"):
        AuditSettings(map_size_bytes_initial=1024)
