"""Conformance runner for Noise test vectors in the cacophony / snow JSON format.

Usage::

    python -m crypto.noise.vectors FILE [FILE...] [--verbose]

Theory of operation
-------------------
A vector file is ``{"vectors": [vector, ...]}``.  Each vector names a protocol
(``protocol_name``, or ``name`` in older files) and gives, for the initiator
(``init_*``) and responder (``resp_*``), the prologue, static and ephemeral private
keys, pre-known remote static key and PSKs, all hex; then ``messages``, a list of
``{payload, ciphertext}``, and optionally the final ``handshake_hash``.

:func:`run_vector` is a pure function of one parsed vector.  It builds both sides
with the vector's fixed ephemerals, then replays every message: during the handshake
message ``i`` is written by the initiator when ``i`` is even, and afterwards the
transport messages keep alternating (for one-way patterns the initiator sends them
all).  Every ciphertext must match byte for byte and decrypt to its payload, both
sides must agree on the handshake hash, and it must equal ``handshake_hash`` when
the file gives one.  Vectors for protocols this package does not implement (448,
AESGCM, fallback, hybrid) are *skipped*, not failed.

Only :func:`main` touches the file system; it is the one sanctioned file read in
``crypto/``.  Its last line is always ``N passed, M failed, K skipped``; the exit
status is 0 when nothing failed, 1 when a vector failed, and 2 when a file cannot
be read or parsed.
"""

from __future__ import annotations

import argparse
import enum
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from .cipher_state import CipherState
from .dh import KeyPair
from .errors import LocalProtocolError, NoiseError, UnsupportedProtocolError
from .handshake_state import HandshakeState
from .suite import NoiseProtocol

__all__ = ["Outcome", "Tally", "VectorResult", "main", "run_vector", "run_vectors"]

#: Exit status when a vector file cannot be read or parsed.
EXIT_BAD_INPUT = 2
#: Exit status when at least one vector failed.
EXIT_FAILED = 1

# Keys present only in vectors for features we do not implement.
_UNSUPPORTED_KEYS = ("fallback", "fallback_pattern", "init_hybrid_ephemeral", "hybrid")


class Outcome(enum.Enum):
    """What happened to one vector."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True, kw_only=True)
class VectorResult:
    """The result of one vector.

    Attributes:
        name: the vector's protocol name.
        outcome: passed, failed or skipped.
        reason: why it failed or was skipped; empty when it passed.
    """

    name: str
    outcome: Outcome
    reason: str = ""


@dataclass(kw_only=True)
class Tally:
    """Counts over many vectors, plus the results that were not passes."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0
    problems: list[VectorResult] = field(default_factory=list)

    def add(self, result: VectorResult) -> None:
        """Count *result*, remembering it unless it passed."""
        setattr(self, result.outcome.value, getattr(self, result.outcome.value) + 1)
        if result.outcome is not Outcome.PASSED:
            self.problems.append(result)

    def summary(self) -> str:
        """The runner's last line: ``N passed, M failed, K skipped``."""
        return f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped"


class _Mismatch(Exception):
    """A vector's expectation was not met; the message says which."""


def _hex(vector: Mapping[str, Any], key: str) -> bytes | None:
    value = vector.get(key)
    return None if value is None else bytes.fromhex(value)


def _no_generation() -> KeyPair:
    raise LocalProtocolError("the vector supplies no ephemeral key for this side")


def _side(vector: Mapping[str, Any], protocol: NoiseProtocol, prefix: str) -> HandshakeState:
    static, ephemeral = _hex(vector, f"{prefix}_static"), _hex(vector, f"{prefix}_ephemeral")
    from_private = protocol.dh.keypair_from_private
    return HandshakeState(
        protocol=protocol,
        initiator=prefix == "init",
        prologue=_hex(vector, f"{prefix}_prologue") or b"",
        s=None if static is None else from_private(static),
        e=None if ephemeral is None else from_private(ephemeral),
        rs=_hex(vector, f"{prefix}_remote_static"),
        re=None,
        psks=[bytes.fromhex(psk) for psk in vector.get(f"{prefix}_psks") or ()],
        generate_keypair=_no_generation,
    )


def _exchange(
    write: Callable[[bytes], bytes],
    read: Callable[[bytes], bytes],
    index: int,
    message: Mapping[str, Any],
) -> None:
    """Send one message with *write*, check it, receive it with *read*, check that."""
    payload, expected = bytes.fromhex(message["payload"]), bytes.fromhex(message["ciphertext"])
    ciphertext = write(payload)
    if ciphertext != expected:
        raise _Mismatch(f"message {index}: ciphertext {ciphertext.hex()} != {expected.hex()}")
    received = read(ciphertext)
    if received != payload:
        raise _Mismatch(f"message {index}: decrypted payload differs")


def _replay(vector: Mapping[str, Any], protocol: NoiseProtocol) -> None:
    init, resp = _side(vector, protocol, "init"), _side(vector, protocol, "resp")
    messages: Sequence[Mapping[str, Any]] = vector["messages"]
    split: tuple[CipherState, CipherState, CipherState, CipherState] | None = None
    for index, message in enumerate(messages):
        from_initiator = index % 2 == 0 or protocol.pattern.one_way
        if not (init.complete and resp.complete):
            sender, receiver = (init, resp) if from_initiator else (resp, init)
            _exchange(sender.write_message, receiver.read_message, index, message)
            continue
        if split is None:
            split = (*init.split(), *resp.split())
        init_send, init_recv, resp_send, resp_recv = split
        send, recv = (init_send, resp_recv) if from_initiator else (resp_send, init_recv)
        # Transport messages in vectors carry empty associated data.
        _exchange(
            partial(send.encrypt_with_ad, b""), partial(recv.decrypt_with_ad, b""), index, message
        )
    if not (init.complete and resp.complete):
        raise _Mismatch(f"handshake incomplete after {len(messages)} messages")
    if init.handshake_hash != resp.handshake_hash:
        raise _Mismatch("initiator and responder disagree on the handshake hash")
    expected_hash = _hex(vector, "handshake_hash")
    if expected_hash is not None and init.handshake_hash != expected_hash:
        raise _Mismatch(f"handshake hash {init.handshake_hash.hex()} != {expected_hash.hex()}")


def run_vector(vector: Mapping[str, Any]) -> VectorResult:
    """Run one parsed vector; never raises for a bad vector, reports it instead."""
    name = str(vector.get("protocol_name") or vector.get("name") or "<unnamed>")
    unsupported = [key for key in _UNSUPPORTED_KEYS if vector.get(key)]
    if unsupported:
        return VectorResult(name=name, outcome=Outcome.SKIPPED, reason=f"uses {unsupported[0]}")
    try:
        protocol = NoiseProtocol.from_name(name)
    except UnsupportedProtocolError as exc:
        return VectorResult(name=name, outcome=Outcome.SKIPPED, reason=str(exc))
    try:
        _replay(vector, protocol)
    except (_Mismatch, NoiseError) as exc:
        return VectorResult(name=name, outcome=Outcome.FAILED, reason=str(exc))
    except (KeyError, TypeError, ValueError) as exc:
        reason = f"malformed vector: {type(exc).__name__}: {exc}"
        return VectorResult(name=name, outcome=Outcome.FAILED, reason=reason)
    return VectorResult(name=name, outcome=Outcome.PASSED)


def run_vectors(document: Mapping[str, Any], tally: Tally | None = None) -> Tally:
    """Run every vector of a parsed file (``{"vectors": [...]}``) into *tally*."""
    tally = Tally() if tally is None else tally
    vectors: Iterable[object] = document["vectors"]
    for vector in vectors:
        if isinstance(vector, Mapping):
            tally.add(run_vector(vector))
        else:
            malformed = "malformed vector: not a JSON object"
            tally.add(VectorResult(name="<unnamed>", outcome=Outcome.FAILED, reason=malformed))
    return tally


def _load(path: Path) -> Mapping[str, Any]:
    document = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict) or not isinstance(document.get("vectors"), list):
        raise ValueError('expected an object with a "vectors" list')
    return document


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m crypto.noise.vectors",
        description="Check crypto.noise against cacophony/snow JSON Noise test vectors.",
    )
    parser.add_argument("files", nargs="+", type=Path, help="vector files (JSON)")
    parser.add_argument("-v", "--verbose", action="store_true", help="list skipped vectors")
    args = parser.parse_args(argv)
    documents = []
    for path in args.files:
        try:
            documents.append((path, _load(path)))
        except (OSError, ValueError) as exc:  # JSONDecodeError is a ValueError
            print(f"error: cannot read vector file {path}: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    total = Tally()
    for path, document in documents:
        tally = run_vectors(document)
        for problem in tally.problems:
            if problem.outcome is Outcome.FAILED or args.verbose:
                print(f"{problem.outcome.value.upper()} {path}: {problem.name}: {problem.reason}")
        print(f"{path}: {tally.summary()}")
        total.passed += tally.passed
        total.failed += tally.failed
        total.skipped += tally.skipped
    print(total.summary())
    return EXIT_FAILED if total.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
