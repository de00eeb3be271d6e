"""Conformance of crypto.noise against the shared cacophony and snow test vectors.

The vector files live outside the repository, next to it, and are read in place.
Each file is run twice: in-process through :func:`run_vectors`, and as the real
command ``python -m crypto.noise.vectors`` whose last line and exit status the
operator sees.  The counts are what this implementation measured: every vector of
a supported protocol (25519, ChaChaPoly, any of the four hashes, psk included)
passes; 448 and AESGCM vectors are skipped.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from crypto.noise.vectors import Outcome, run_vector, run_vectors

REPO_ROOT = Path(__file__).resolve().parents[2]
VECTORS = REPO_ROOT.parent / "shared" / "vectors" / "noise"
CACOPHONY = VECTORS / "cacophony.json"
SNOW = VECTORS / "snow.json"
# Measured: 59 cacophony and 51 snow patterns x 4 hashes for 25519 + ChaChaPoly.
MIN_PASSED = {CACOPHONY.name: 236, SNOW.name: 204}
DAEMON_SUITE = "Noise_XX_25519_ChaChaPoly_SHA256"
RUNNER_TIMEOUT_S = 120


def _load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def _run_cli(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crypto.noise.vectors", *map(str, files)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=RUNNER_TIMEOUT_S,
    )


def _daemon_vector() -> dict[str, Any]:
    vectors = _load(CACOPHONY)["vectors"]
    return copy.deepcopy(next(v for v in vectors if v["protocol_name"] == DAEMON_SUITE))


@pytest.mark.parametrize("path", [CACOPHONY, SNOW], ids=lambda path: path.name)
def test_every_supported_vector_passes_in_process(path: Path) -> None:
    tally = run_vectors(_load(path))
    failures = [f"{p.name}: {p.reason}" for p in tally.problems if p.outcome is Outcome.FAILED]
    assert failures == []
    assert tally.passed >= MIN_PASSED[path.name]
    # Only algorithms we deliberately leave out are skipped, never a pattern or psk.
    for problem in tally.problems:
        assert "448" in problem.name or "AESGCM" in problem.name, problem


def test_the_daemon_suite_and_psk_vectors_are_among_the_passes() -> None:
    tally = run_vectors(_load(CACOPHONY))
    assert tally.passed + tally.failed + tally.skipped == len(_load(CACOPHONY)["vectors"])
    for name in (
        DAEMON_SUITE,
        "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b",
        "Noise_I1K1_25519_ChaChaPoly_SHA512",
    ):
        vector = next(v for v in _load(CACOPHONY)["vectors"] if v["protocol_name"] == name)
        assert run_vector(vector).outcome is Outcome.PASSED, name


def test_runner_command_on_both_files() -> None:
    result = _run_cli(CACOPHONY, SNOW)
    assert result.returncode == 0, result.stdout + result.stderr
    passed, failed, skipped = _parse_summary(result.stdout.splitlines()[-1])
    assert failed == 0
    assert passed >= sum(MIN_PASSED.values())
    assert passed + skipped == len(_load(CACOPHONY)["vectors"]) + len(_load(SNOW)["vectors"])


def _parse_summary(line: str) -> tuple[int, int, int]:
    words = line.split()
    assert words[1::2] == ["passed,", "failed,", "skipped"], line
    return int(words[0]), int(words[2]), int(words[4])


def test_runner_command_fails_on_a_mutated_vector(tmp_path: Path) -> None:
    good, bad = _daemon_vector(), _daemon_vector()
    ciphertext = bad["messages"][4]["ciphertext"]  # a transport message
    bad["messages"][4]["ciphertext"] = ciphertext[:-2] + format(int(ciphertext[-2:], 16) ^ 1, "02x")
    mutated = tmp_path / "mutated.json"
    mutated.write_text(json.dumps({"vectors": [good, bad]}), encoding="utf-8")
    result = _run_cli(mutated)
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "1 passed, 1 failed, 0 skipped"
    assert "FAIL" in result.stdout and "message 4" in result.stdout


@pytest.mark.parametrize("content", ["{not json", '{"vectors": 3}', "[]"])
def test_runner_command_reports_unreadable_files(tmp_path: Path, content: str) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text(content, encoding="utf-8")
    for files in ((broken,), (tmp_path / "missing.json",)):
        result = _run_cli(*files)
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1
        assert result.stderr.startswith("error: cannot read vector file")


@pytest.mark.parametrize("index", range(6))
def test_each_mutated_message_fails_the_vector(index: int) -> None:
    vector = _daemon_vector()
    assert run_vector(vector).outcome is Outcome.PASSED
    payload = vector["messages"][index]["payload"]
    vector["messages"][index]["payload"] = payload + "00"
    result = run_vector(vector)
    assert result.outcome is Outcome.FAILED
    assert f"message {index}" in result.reason


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"handshake_hash": "00" * 32}, "handshake hash"),
        ({"init_prologue": "00"}, "authentication failed"),
        ({"messages": []}, "handshake incomplete"),
        ({"init_static": None}, "static key pair s"),
        ({"messages": "nope"}, "malformed vector"),
    ],
)
def test_broken_vectors_fail_with_a_reason(change: dict[str, Any], reason: str) -> None:
    vector = _daemon_vector() | change
    result = run_vector(vector)
    assert result.outcome is Outcome.FAILED
    assert reason in result.reason


@pytest.mark.parametrize(
    "vector",
    [
        {"protocol_name": "Noise_XX_448_ChaChaPoly_SHA256"},
        {"protocol_name": "Noise_XX_25519_AESGCM_SHA256"},
        {"protocol_name": "Noise_XXfallback_25519_ChaChaPoly_SHA256"},
        {"name": "Noise_XX_25519_ChaChaPoly_SHA256", "fallback": True},
    ],
)
def test_unsupported_vectors_are_skipped(vector: dict[str, Any]) -> None:
    assert run_vector(vector).outcome is Outcome.SKIPPED


def test_non_object_vectors_count_as_failures() -> None:
    tally = run_vectors({"vectors": [_daemon_vector(), 42]})
    assert (tally.passed, tally.failed, tally.skipped) == (1, 1, 0)
