"""`vramancer audit` as a user runs it: real processes, real LMDB files, real socket.

Until the client mounts the audit app (``vramancer audit``), the commands run through
``cli.audit.main`` in a fresh interpreter; afterwards through the console script.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
import trio
from starlette.applications import Starlette

from crypto.audit import ChainVerifier, Ed25519NoteVerifier, open_checkpoint
from crypto.identity import encode_key_file
from crypto.merkle import verify_inclusion
from tests.audit.helpers import CLUSTER_ID, fill_store, make_identity, raw_env, stored
from tests.conftest import REPO_ROOT, program
from vramancer_node.apiserver import serve_api
from vramancer_node.audit import kinds
from vramancer_node.audit.layout import encode_key
from vramancer_node.audit.routes import audit_routes
from vramancer_node.audit.service import AuditService
from vramancer_node.layout import API_SOCKET_NAME, KEY_FILE_NAME, LOCK_FILE_NAME

RECORDS = 28
CHECKPOINTS = (10, 25)


def audit_command(*args: str) -> list[str]:
    return [program("vramancer"), "audit", *args]


def audit(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        audit_command(*args), capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, env=env
    )


@pytest.fixture
def filled(state_dir: Path) -> Path:
    fill_store(state_dir, RECORDS, checkpoint_at=CHECKPOINTS)
    return state_dir


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("vramancer: error: ")
    return lines[0]


def test_offline_tail_verify_export_proof(filled: Path) -> None:
    before = _snapshot(filled)
    d = str(filled)

    tail = audit("tail", "-n", "5", "--json", "--state-dir", d)
    assert tail.returncode == 0, tail.stderr
    body = json.loads(tail.stdout)
    assert body["schema"] == "vramancer.audit.tail.v1"
    assert [r["seq"] for r in body["records"]] == list(range(RECORDS - 5, RECORDS))

    table = audit("tail", "--state-dir", d)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["SEQ", "TIME", "(UTC)", "KIND", "DETAILS"]
    assert len(lines) == 1 + 20 and lines[-1].startswith(f"{RECORDS - 1} ")
    assert "keys=key-27" in lines[-1]

    verify = audit("verify", "--json", "--state-dir", d)
    assert verify.returncode == 0, verify.stderr
    report = json.loads(verify.stdout)
    assert report["ok"] and report["records"] == RECORDS
    assert report["checkpoint"]["size"] == CHECKPOINTS[-1]
    assert report["uncovered_records"] == RECORDS - CHECKPOINTS[-1]
    plain = audit("verify", "--state-dir", d)
    assert plain.returncode == 0 and plain.stdout.split()[:2] == ["status", "ok"]

    _check_export(audit("export", "--state-dir", d))

    proof = audit("proof", "6", "--json", "--state-dir", d)
    assert proof.returncode == 0, proof.stderr
    _check_proof(json.loads(proof.stdout), 6)
    uncovered = audit("proof", str(RECORDS - 1), "--state-dir", d)
    assert "not covered by a checkpoint" in one_error_line(uncovered)
    beyond = audit("proof", str(RECORDS), "--state-dir", d)
    assert f"no record {RECORDS}" in one_error_line(beyond)

    assert _snapshot(filled) == before  # nothing was created or written


def test_verify_names_the_first_bad_record(filled: Path) -> None:
    with raw_env(filled) as (env, dbs), env.begin(write=True) as txn:
        data = bytearray(stored(txn, encode_key(7), dbs.records))
        data[30] ^= 0x04
        txn.put(encode_key(7), bytes(data), db=dbs.records)
    result = audit("verify", "--state-dir", str(filled))
    assert "the audit log does not verify: record 7: " in one_error_line(result)
    assert result.stdout == ""
    as_json = audit("verify", "--json", "--state-dir", str(filled))
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and report["bad_seq"] == 7 and report["records"] == 7


def test_verify_names_a_deleted_record(filled: Path) -> None:
    with raw_env(filled) as (env, dbs), env.begin(write=True) as txn:
        txn.delete(encode_key(12), db=dbs.records)
    assert "record 12: missing" in one_error_line(audit("verify", "--state-dir", str(filled)))


def test_verify_names_an_edited_checkpoint(filled: Path) -> None:
    with raw_env(filled) as (env, dbs), env.begin(write=True) as txn:
        note = stored(txn, encode_key(10), dbs.checkpoints)
        txn.put(encode_key(10), note.replace(b"\n10\n", b"\n9\n"), db=dbs.checkpoints)
    line = one_error_line(audit("verify", "--state-dir", str(filled)))
    assert "checkpoint 10: " in line and "does not verify" in line


def test_verify_checks_the_log_against_the_node_key_file(filled: Path) -> None:
    key_file = filled / KEY_FILE_NAME
    key_file.write_bytes(encode_key_file(make_identity()))
    key_file.chmod(0o600)
    assert audit("verify", "--state-dir", str(filled)).returncode == 0
    key_file.write_bytes(encode_key_file(make_identity(5)))
    result = audit("verify", "--state-dir", str(filled))
    assert "not the node's key" in one_error_line(result)


def test_without_a_log(state_dir: Path) -> None:
    for command in ("tail", "verify"):
        result = audit(command, "--state-dir", str(state_dir))
        assert "no audit log" in one_error_line(result)
        assert result.stdout == ""
    assert list(state_dir.iterdir()) == []


def test_a_running_daemon_without_an_answering_socket_is_not_read_under(filled: Path) -> None:
    fd = os.open(filled / LOCK_FILE_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"4242\n")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = audit("verify", "--state-dir", str(filled))
        assert "pid 4242" in one_error_line(result)
    finally:
        os.close(fd)


def test_a_stale_socket_falls_back_to_the_files(filled: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(filled / API_SOCKET_NAME))
    stale.close()  # the file stays, nobody listens: a node that died
    result = audit("tail", "-n", "1", "--json", "--state-dir", str(filled))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["records"][0]["seq"] == RECORDS - 1


def test_usage_errors_exit_1(filled: Path) -> None:
    result = audit("proof", "minus-one", "--state-dir", str(filled))
    assert result.returncode == 1 and "Invalid value for 'seq'" in result.stderr


async def test_through_the_api_of_a_running_node(state_dir: Path) -> None:
    service = AuditService(state_dir, make_identity(), CLUSTER_ID)
    stop = trio.Event()
    app = Starlette(routes=audit_routes(lambda: service))
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        await nursery.start(
            lambda task_status: serve_api(
                app,
                state_dir / API_SOCKET_NAME,
                shutdown_trigger=stop,
                grace_s=1,
                task_status=task_status,
            )
        )
        for number in range(12):
            await service.append(kinds.TOKEN_USED, {"token_id": f"t{number}", "node_id": "n"})
        results = {}
        for name, args in {
            "tail": ("tail", "-n", "3", "--json"),
            "verify": ("verify", "--json"),
            "proof": ("proof", "11", "--json"),  # signs a checkpoint on demand
            "export": ("export",),
        }.items():
            command = audit_command(*args, "--state-dir", str(state_dir))
            env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
            results[name] = await trio.run_process(
                command, capture_stdout=True, capture_stderr=True, check=False, env=env
            )
        stop.set()
        nursery.cancel_scope.cancel()
    for name, result in results.items():
        assert result.returncode == 0, (name, result.stderr)
    tail = json.loads(results["tail"].stdout)
    assert [r["seq"] for r in tail["records"]] == [9, 10, 11]
    assert json.loads(results["verify"].stdout)["ok"] is True
    _check_proof(json.loads(results["proof"].stdout), 11)
    completed = subprocess.CompletedProcess([], 0, results["export"].stdout.decode(), "")
    _check_export(completed, records=12)


def _check_export(result: subprocess.CompletedProcess[str], records: int = RECORDS) -> None:
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    header, body, last = lines[0], lines[1:-1], lines[-1]
    assert header["schema"] == "vramancer.audit.export.v1" and header["size"] == records
    assert [r["schema"] for r in body] == ["vramancer.audit.record.v1"] * records
    assert last["schema"] == "vramancer.audit.checkpoint.v1"
    # A third party re-verifies the export from its own bytes and the public key.
    public_key = base64.b64decode(header["public_key"])
    chain = ChainVerifier(public_key=public_key, node_id=header["node_id"])
    for record in body:
        chain.feed_bytes(base64.b64decode(record["signed_record"]))
    verifier = Ed25519NoteVerifier(name=header["origin"], public_key=public_key)
    assert open_checkpoint(last["note"], [verifier]).checkpoint.size == last["size"]


def _check_proof(proof: dict[str, object], seq: int) -> None:
    assert proof["schema"] == "vramancer.audit.proof.v1" and proof["seq"] == seq
    root = bytes.fromhex(str(proof["root_hash"]))
    path = [bytes.fromhex(node) for node in proof["inclusion_proof"]]  # type: ignore[attr-defined]
    leaf = bytes.fromhex(str(proof["leaf_hash"]))
    verify_inclusion(seq, int(proof["tree_size"]), leaf, path, root)  # type: ignore[call-overload]


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
    }
