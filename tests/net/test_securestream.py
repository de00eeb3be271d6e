"""The secure stream against trio's stream conformance checks and hostile input."""

from __future__ import annotations

import trio
import trio.testing

from crypto.noise import HandshakeState, KeyPair
from vramancer_node.net.securestream import SecureStream


def _handshake_ciphers():
    prologue = b"vramancer/noise/1"
    a = HandshakeState.initialize(
        pattern="XX", initiator=True, prologue=prologue, s=KeyPair.generate()
    )
    b = HandshakeState.initialize(
        pattern="XX", initiator=False, prologue=prologue, s=KeyPair.generate()
    )
    b.read_message(a.write_message(b""))
    a.read_message(b.write_message(b""))
    b.read_message(a.write_message(b""))
    return a.split(), b.split()


def _pair(transport_a, transport_b):
    (a_send, a_recv), (b_send, b_recv) = _handshake_ciphers()
    return SecureStream(transport_a, a_send, a_recv), SecureStream(transport_b, b_send, b_recv)


async def memory_pair():
    return _pair(*trio.testing.memory_stream_pair())


async def lockstep_pair():
    return _pair(*trio.testing.lockstep_stream_pair())


async def test_conformance_half_closeable(autojump_clock: trio.testing.MockClock) -> None:
    await trio.testing.check_half_closeable_stream(memory_pair, lockstep_pair)
