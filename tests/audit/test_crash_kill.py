"""Crash safety: SIGKILL a real process appending in a loop, at random moments, many times.

After every kill the log must verify, every record the child acknowledged must be in it
with the content it acknowledged, and at most one batch in flight (one record per
concurrent writer) may be there unacknowledged.  The kill moments come from one seeded
``random.Random``; set ``VRAMANCER_CRASH_SEED`` to replay a failure.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from crypto.audit import decode_signed_record
from tests.audit.helpers import verify_dir
from tests.conftest import REPO_ROOT
from vramancer_node.audit.errors import StoreMissingError
from vramancer_node.audit.store import open_readonly

KILLS = 50
WRITERS = 4
ACKS_BEFORE_KILL_MAX = 40
SEED = int(os.environ.get("VRAMANCER_CRASH_SEED", "20240917"))

CHILD = textwrap.dedent(
    """
    import os
    import sys
    from pathlib import Path

    import trio

    from tests.audit.helpers import CLUSTER_ID, make_identity
    from vramancer_node.audit.service import AuditService, AuditSettings


    async def main(state_dir, writers):
        settings = AuditSettings(checkpoint_every_records=16)
        service = AuditService(Path(state_dir), make_identity(), CLUSTER_ID, settings=settings)
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)

            async def write(writer):
                number = 0
                while True:
                    marker = f"{os.getpid()}-{writer}-{number}"
                    seq = await service.append("config_changed", {"keys": [marker]})
                    print(seq, marker, flush=True)
                    number += 1

            for writer in range(writers):
                nursery.start_soon(write, writer)


    trio.run(main, sys.argv[1], int(sys.argv[2]))
    """
)


def test_sigkill_at_random_moments_leaves_a_verifying_acknowledged_prefix(
    state_dir: Path,
) -> None:
    rng = random.Random(SEED)
    acked: dict[int, str] = {}
    size = 0
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    for kill in range(KILLS):
        where = f"kill {kill}; reproduce with VRAMANCER_CRASH_SEED={SEED}"
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(state_dir), str(WRITERS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO_ROOT,
        )
        assert child.stdout is not None
        try:
            if rng.random() < 0.2:
                # Anywhere from interpreter start-up to the first commits.
                time.sleep(rng.uniform(0.0, 0.4))
            else:
                for _ in range(rng.randint(1, ACKS_BEFORE_KILL_MAX)):
                    line = child.stdout.readline()
                    if not line.endswith("\n"):
                        break  # end of output, or a line cut short by the kill below
                    _note_ack(acked, line, where)
                time.sleep(rng.uniform(0.0, 0.004))
        finally:
            child.send_signal(signal.SIGKILL)
            # Read through the same buffered file as readline() above (communicate()
            # would read the raw pipe and lose lines already buffered).
            rest = child.stdout.read()
            err = child.stderr.read() if child.stderr else ""
            child.wait(timeout=30)
            child.stdout.close()
            if child.stderr:
                child.stderr.close()
        # Only whole lines are acknowledgements: the kill may cut the last one short.
        for line in rest.split("\n")[:-1]:
            _note_ack(acked, line, where)
        assert child.returncode == -signal.SIGKILL, f"{where}: child failed early:\n{err}"
        size = _check_log(state_dir, acked, size, where)
    assert len(acked) > KILLS, "the kills came too early to test anything"


def _note_ack(acked: dict[int, str], line: str, where: str) -> None:
    seq_text, marker = line.split()
    seq = int(seq_text)
    assert seq not in acked, f"{where}: seq {seq} acknowledged twice"
    acked[seq] = marker


def _check_log(state_dir: Path, acked: dict[int, str], previous_size: int, where: str) -> int:
    """Check the log after a kill; return its size."""
    try:
        report = verify_dir(state_dir)
    except StoreMissingError:
        assert not acked, f"{where}: records were acknowledged but there is no log"
        return 0
    assert report.ok, f"{where}: {report.reason}"
    with open_readonly(state_dir) as reader, reader.view() as view:
        size = view.size
        assert size >= previous_size, f"{where}: the log shrank from {previous_size} to {size}"
        for seq, marker in acked.items():
            data = view.record_bytes(seq)
            assert data is not None, f"{where}: acknowledged record {seq} is lost"
            keys = decode_signed_record(data).record.body["keys"]
            assert keys == (marker,), f"{where}: record {seq} is {keys!r}, acknowledged {marker}"
    unacknowledged = [seq for seq in range(previous_size, size) if seq not in acked]
    assert len(unacknowledged) <= WRITERS, f"{where}: unacknowledged records {unacknowledged}"
    return size
