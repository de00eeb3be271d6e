"""HandshakeState (spec section 5.3): run a handshake pattern, then split.

Theory of operation
-------------------
A :class:`HandshakeState` is a sans-I/O state machine in the h11 style: the caller
passes bytes in (:meth:`~HandshakeState.read_message`) and gets bytes out
(:meth:`~HandshakeState.write_message`); it never touches a socket, a clock or the
global ``random`` module.  Ephemeral keys come from an injectable
``generate_keypair`` (or a fixed ``e`` for test vectors).

Its state is: the :class:`~crypto.noise.symmetric_state.SymmetricState`, the local
key pairs ``s`` and ``e``, the peer's public keys ``rs`` and ``re``, the PSKs still
to be mixed, and the index of the next pattern message.  Message ``i`` is written by
the initiator when ``i`` is even and by the responder otherwise; calling the wrong
method for the turn is a :class:`~crypto.noise.errors.LocalProtocolError`.

Tokens are executed from the pattern tables.  The four DH tokens share one rule,
read from :data:`~crypto.noise.patterns.DH_TOKEN_KEYS`: the first letter names the
initiator's key and the second the responder's, so each side picks its own private
key and the peer's public key by role.  In PSK patterns an ``e`` token also runs
``MixKey(e)`` (spec section 9.2), which keeps encryption keyed by fresh randomness.

Failure is final.  Any exception while processing a message leaves ``h`` and ``ck``
half-updated, so the state is poisoned and every later call raises
``LocalProtocolError``; the connection must be dropped.  The one exception is
``MessageTooLongError`` from ``write_message``, which is checked before any state
changes, so the caller may retry with a smaller payload.

After the last message, :meth:`~HandshakeState.split` returns the two transport
CipherStates oriented for this side, exactly once: a second split would hand out the
same keys at nonce 0 again, which would be nonce reuse.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .cipher_state import CipherState
from .dh import KeyPair
from .errors import HandshakeError, LocalProtocolError, MessageTooLongError
from .limits import MAX_MESSAGE_BYTES, TAG_BYTES
from .patterns import DH_TOKEN_KEYS, Token
from .suite import DEFAULT_SUITE, NoiseProtocol
from .symmetric_state import SymmetricState

__all__ = ["PSK_BYTES", "HandshakeState"]

#: Length of every Noise pre-shared key, in bytes (spec section 9.1).
PSK_BYTES = 32


def _message_overhead(tokens: Sequence[Token], dhlen: int, has_key: bool, psk: bool) -> int:
    """Bytes a message adds around its payload, given whether a key exists at the start."""
    overhead = 0
    for token in tokens:
        if token is Token.E:
            overhead += dhlen
            has_key = has_key or psk  # psk patterns MixKey(e)
        elif token is Token.S:
            overhead += dhlen + (TAG_BYTES if has_key else 0)
        else:  # DH tokens and psk all key the cipher
            has_key = True
    return overhead + (TAG_BYTES if has_key else 0)


class HandshakeState:
    """One side of a Noise handshake.  Build with :meth:`initialize`."""

    def __init__(
        self,
        *,
        protocol: NoiseProtocol,
        initiator: bool,
        prologue: bytes,
        s: KeyPair | None,
        e: KeyPair | None,
        rs: bytes | None,
        re: bytes | None,
        psks: Sequence[bytes],
        generate_keypair: Callable[[], KeyPair],
    ) -> None:
        """Prefer :meth:`initialize`; this takes an already parsed protocol."""
        self._protocol = protocol
        self._initiator = initiator
        self._s, self._e, self._rs, self._re = s, e, rs, re
        self._psks = list(psks)
        self._generate_keypair = generate_keypair
        self._message_index = 0
        self._failed = False
        self._check_keys()
        self._symmetric: SymmetricState | None = SymmetricState(
            protocol.name, protocol.cipher, protocol.hash
        )
        self._handshake_hash = b""
        self._symmetric.mix_hash(prologue)
        self._mix_pre_messages(self._symmetric)

    @classmethod
    def initialize(
        cls,
        *,
        initiator: bool,
        pattern: str | None = None,
        protocol_name: str | None = None,
        prologue: bytes = b"",
        s: KeyPair | None = None,
        e: KeyPair | None = None,
        rs: bytes | None = None,
        re: bytes | None = None,
        psks: Sequence[bytes] = (),
        generate_keypair: Callable[[], KeyPair] | None = None,
    ) -> HandshakeState:
        """``Initialize()``: start a handshake.

        Args:
            initiator: True for the side that sends the first message.
            pattern: pattern name such as ``"XX"``; optional if *protocol_name* is
                given, and must agree with it if both are.
            protocol_name: full name; defaults to ``Noise_<pattern>_25519_ChaChaPoly_SHA256``.
            prologue: bytes both sides must agree on; a mismatch fails the handshake.
            s: local static key pair, required if the pattern sends or pre-shares it.
            e: fixed local ephemeral key pair (test vectors only); else generated.
            rs: peer's static public key, required if the pattern pre-shares it.
                In patterns that transmit ``s`` it is replaced by what the peer
                sends, unchecked: to pin a peer, compare :attr:`remote_static`.
            re: peer's ephemeral public key (only pre-shared in fallback patterns).
            psks: the 32-byte PSKs in order of their ``psk`` tokens.
            generate_keypair: ephemeral key source; defaults to the DH function's
                CSPRNG-backed ``GENERATE_KEYPAIR``.

        Raises:
            UnsupportedProtocolError: unknown pattern, modifier or algorithm.
            LocalProtocolError: inconsistent names, or a required key is missing.
        """
        if protocol_name is None:
            if pattern is None:
                raise LocalProtocolError("give a pattern, a protocol_name, or both")
            protocol_name = f"Noise_{pattern}_{DEFAULT_SUITE}"
        protocol = NoiseProtocol.from_name(protocol_name)
        if pattern is not None and pattern != protocol.pattern.name:
            raise LocalProtocolError(f"pattern {pattern!r} disagrees with {protocol_name!r}")
        return cls(
            protocol=protocol,
            initiator=initiator,
            prologue=prologue,
            s=s,
            e=e,
            rs=rs,
            re=re,
            psks=psks,
            generate_keypair=generate_keypair or protocol.dh.generate_keypair,
        )

    def __repr__(self) -> str:
        role = "initiator" if self._initiator else "responder"
        return (
            f"HandshakeState({self._protocol.name}, {role}, "
            f"message={self._message_index}/{len(self._protocol.pattern.messages)})"
        )

    # -- public state ---------------------------------------------------------------

    @property
    def protocol(self) -> NoiseProtocol:
        """The protocol being run."""
        return self._protocol

    @property
    def is_initiator(self) -> bool:
        """Whether this side sent (or will send) the first message."""
        return self._initiator

    @property
    def complete(self) -> bool:
        """True once every pattern message has been written or read."""
        return self._message_index == len(self._protocol.pattern.messages)

    @property
    def is_my_turn(self) -> bool:
        """True when the next pattern message is ours to write."""
        return not self.complete and (self._message_index % 2 == 0) == self._initiator

    @property
    def handshake_hash(self) -> bytes:
        """``h``: after completion, a unique session id for channel binding."""
        if self._symmetric is None:
            return self._handshake_hash
        return self._symmetric.handshake_hash

    @property
    def remote_static(self) -> bytes | None:
        """The peer's static public key, once pre-shared or received."""
        return self._rs

    @property
    def remote_ephemeral(self) -> bytes | None:
        """The peer's ephemeral public key, once received."""
        return self._re

    # -- setup ------------------------------------------------------------------------

    def _check_keys(self) -> None:
        pattern = self._protocol.pattern
        local_pre, remote_pre = (
            (pattern.initiator_pre_message, pattern.responder_pre_message)
            if self._initiator
            else (pattern.responder_pre_message, pattern.initiator_pre_message)
        )
        local_tokens = set(local_pre).union(
            *(m for i, m in enumerate(pattern.messages) if (i % 2 == 0) == self._initiator)
        )
        dhlen = self._protocol.dh.dhlen
        if Token.S in local_tokens and self._s is None:
            raise LocalProtocolError(f"{pattern.name} needs the local static key pair s")
        if Token.E in local_pre and self._e is None:
            raise LocalProtocolError(f"{pattern.name} needs the local ephemeral key pair e")
        for token, key, label in ((Token.S, self._rs, "rs"), (Token.E, self._re, "re")):
            if token in remote_pre and key is None:
                raise LocalProtocolError(f"{pattern.name} needs the remote public key {label}")
            if key is not None and len(key) != dhlen:
                raise LocalProtocolError(f"{label} must be {dhlen} bytes, got {len(key)}")
        if len(self._psks) != pattern.psk_count:
            raise LocalProtocolError(
                f"{pattern.name} needs {pattern.psk_count} PSKs, got {len(self._psks)}"
            )
        if any(len(psk) != PSK_BYTES for psk in self._psks):
            raise LocalProtocolError(f"every PSK must be {PSK_BYTES} bytes")

    def _mix_pre_messages(self, symmetric: SymmetricState) -> None:
        pattern = self._protocol.pattern
        for pre_initiator, tokens in (
            (True, pattern.initiator_pre_message),
            (False, pattern.responder_pre_message),
        ):
            local = pre_initiator == self._initiator
            for token in tokens:
                public = self._local_public(token) if local else self._remote_public(token)
                symmetric.mix_hash(public)
                if token is Token.E and pattern.has_psk:
                    symmetric.mix_key(public)

    # -- key lookup -------------------------------------------------------------------

    def _local_pair(self, token: Token) -> KeyPair:
        pair = self._e if token is Token.E else self._s
        if pair is None:  # unreachable for validated patterns; guards future edits
            raise LocalProtocolError(f"local key {token.value} is missing")
        return pair

    def _local_public(self, token: Token) -> bytes:
        return self._local_pair(token).public

    def _remote_public(self, token: Token) -> bytes:
        public = self._re if token is Token.E else self._rs
        if public is None:
            raise LocalProtocolError(f"remote key {token.value} is missing")
        return public

    def _mix_dh(self, symmetric: SymmetricState, token: Token) -> None:
        init_key, resp_key = DH_TOKEN_KEYS[token]
        local, remote = (init_key, resp_key) if self._initiator else (resp_key, init_key)
        shared = self._protocol.dh.dh(self._local_pair(local).private, self._remote_public(remote))
        symmetric.mix_key(shared)

    # -- messages ---------------------------------------------------------------------

    def _begin(self, writing: bool) -> SymmetricState:
        if self._failed:
            raise LocalProtocolError("this handshake already failed; start a new one")
        if self.complete or self._symmetric is None:
            raise LocalProtocolError("the handshake is complete; use split()")
        if self.is_my_turn != writing:
            wanted = "read_message" if writing else "write_message"
            raise LocalProtocolError(f"it is not our turn; call {wanted}() next")
        return self._symmetric

    def write_message(self, payload: bytes = b"") -> bytes:
        """``WriteMessage(payload)``: return the next handshake message to send.

        Raises:
            MessageTooLongError: the message would exceed ``MAX_MESSAGE_BYTES``
                (checked first; the handshake remains usable).
            LocalProtocolError: not our turn, already complete or failed.
        """
        symmetric = self._begin(writing=True)
        pattern = self._protocol.pattern
        tokens = pattern.messages[self._message_index]
        overhead = _message_overhead(
            tokens, self._protocol.dh.dhlen, symmetric.has_key(), pattern.has_psk
        )
        if overhead + len(payload) > MAX_MESSAGE_BYTES:
            raise MessageTooLongError(
                f"payload of {len(payload)} bytes exceeds the "
                f"{MAX_MESSAGE_BYTES - overhead}-byte limit of this handshake message"
            )
        try:
            message = bytearray()
            for token in tokens:
                message += self._write_token(symmetric, token)
            message += symmetric.encrypt_and_hash(payload)
        except BaseException:
            # Half-updated h and ck cannot be rolled back: the handshake is dead.
            self._failed = True
            raise
        self._message_index += 1
        return bytes(message)

    def _write_token(self, symmetric: SymmetricState, token: Token) -> bytes:
        if token is Token.E:
            if self._e is None:
                self._e = self._generate_keypair()
            symmetric.mix_hash(self._e.public)
            if self._protocol.pattern.has_psk:
                symmetric.mix_key(self._e.public)
            return self._e.public
        if token is Token.S:
            return symmetric.encrypt_and_hash(self._local_public(Token.S))
        if token is Token.PSK:
            symmetric.mix_key_and_hash(self._psks.pop(0))
        else:
            self._mix_dh(symmetric, token)
        return b""

    def read_message(self, message: bytes) -> bytes:
        """``ReadMessage(message)``: consume the peer's handshake message, return its payload.

        Raises:
            HandshakeError: the message is too short for its tokens or too long.
            DecryptError: a static key or payload failed authentication (tampering,
                wrong prologue, wrong keys).
            LowOrderPointError: the peer sent a low-order public key.
            LocalProtocolError: not our turn, already complete or failed.
        """
        symmetric = self._begin(writing=False)
        try:
            if len(message) > MAX_MESSAGE_BYTES:
                raise HandshakeError(
                    f"handshake message of {len(message)} bytes exceeds {MAX_MESSAGE_BYTES}"
                )
            view = memoryview(message)
            for token in self._protocol.pattern.messages[self._message_index]:
                view = self._read_token(symmetric, token, view)
            payload = symmetric.decrypt_and_hash(bytes(view))
        except BaseException:
            # Half-updated h and ck cannot be rolled back: the handshake is dead.
            self._failed = True
            raise
        self._message_index += 1
        return payload

    def _take(self, view: memoryview, length: int, what: str) -> tuple[bytes, memoryview]:
        if len(view) < length:
            raise HandshakeError(f"handshake message too short for {what}")
        return bytes(view[:length]), view[length:]

    def _read_token(self, symmetric: SymmetricState, token: Token, view: memoryview) -> memoryview:
        dhlen = self._protocol.dh.dhlen
        if token is Token.E:
            self._re, view = self._take(view, dhlen, "an ephemeral key")
            symmetric.mix_hash(self._re)
            if self._protocol.pattern.has_psk:
                symmetric.mix_key(self._re)
        elif token is Token.S:
            length = dhlen + (TAG_BYTES if symmetric.has_key() else 0)
            encrypted, view = self._take(view, length, "a static key")
            self._rs = symmetric.decrypt_and_hash(encrypted)
        elif token is Token.PSK:
            symmetric.mix_key_and_hash(self._psks.pop(0))
        else:
            self._mix_dh(symmetric, token)
        return view

    def split(self) -> tuple[CipherState, CipherState]:
        """``Split()``: return ``(send, receive)`` CipherStates for this side, once.

        In one-way patterns (N, K, X) only the initiator's send direction may be used.

        Raises:
            LocalProtocolError: the handshake is not complete, failed, or was split.
        """
        if self._failed or not self.complete:
            raise LocalProtocolError("split() needs a completed, successful handshake")
        if self._symmetric is None:
            raise LocalProtocolError("split() was already called; it hands out keys once")
        initiator_to_responder, responder_to_initiator = self._symmetric.split()
        self._handshake_hash = self._symmetric.handshake_hash
        # Drop ck and the handshake cipher: they must not outlive the handshake.
        self._symmetric = None
        if self._initiator:
            return initiator_to_responder, responder_to_initiator
        return responder_to_initiator, initiator_to_responder
