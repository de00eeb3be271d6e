"""Handshake patterns (spec section 7) kept as data in the spec's own notation.

Theory of operation
-------------------
A pattern is a short script: optional pre-messages (public keys both sides know in
advance), then handshake messages that alternate initiator (``->``) and responder
(``<-``), each a list of tokens.  :data:`PATTERN_SOURCES` holds every pattern exactly
as the spec prints it, so reviewing a pattern means comparing two texts; the parser
turns each into an immutable :class:`HandshakePattern` and checks the structural
rules of spec section 7.3 (no key sent twice, no DH before both keys exist), so a
typo in the table is caught at import time instead of producing a weak handshake.

Token meanings (the handshake executes them; see ``handshake_state``):

========  ======================================================================
``e``     send/receive an ephemeral public key
``s``     send/receive a static public key (encrypted once a key exists)
``ee``    DH(initiator ephemeral, responder ephemeral), and likewise ``es``,
          ``se``, ``ss``: first letter initiator's key, second letter responder's
``psk``   mix a pre-shared key (added by the ``pskN`` modifiers only)
========  ======================================================================

Modifiers (spec section 9): ``psk0`` puts ``psk`` at the start of the first
message, ``pskN`` at the end of message N; several join with ``+`` as in
``XXpsk0+psk3``.  ``fallback`` is not implemented.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from .errors import LocalProtocolError, UnsupportedProtocolError

__all__ = ["PATTERN_SOURCES", "HandshakePattern", "Token", "parse_pattern", "pattern_by_name"]


class Token(enum.Enum):
    """A handshake token, valued by its spelling in the spec."""

    E = "e"
    S = "s"
    EE = "ee"
    ES = "es"
    SE = "se"
    SS = "ss"
    PSK = "psk"


#: DH tokens mapped to (initiator key, responder key) they combine.
DH_TOKEN_KEYS: dict[Token, tuple[Token, Token]] = {
    Token.EE: (Token.E, Token.E),
    Token.ES: (Token.E, Token.S),
    Token.SE: (Token.S, Token.E),
    Token.SS: (Token.S, Token.S),
}


@dataclass(frozen=True, kw_only=True)
class HandshakePattern:
    """A parsed handshake pattern.

    Attributes:
        name: the pattern name with modifiers, e.g. ``"XX"`` or ``"NNpsk0+psk2"``.
        initiator_pre_message: keys the responder knows in advance (``e``/``s``).
        responder_pre_message: keys the initiator knows in advance.
        messages: token lists; message ``i`` is sent by the initiator iff ``i`` is even.
    """

    name: str
    initiator_pre_message: tuple[Token, ...]
    responder_pre_message: tuple[Token, ...]
    messages: tuple[tuple[Token, ...], ...]

    @property
    def one_way(self) -> bool:
        """True for N, K and X: only the initiator ever sends (spec section 7.4)."""
        return len(self.messages) == 1

    @property
    def has_psk(self) -> bool:
        """True when a ``psk`` token appears, which changes how ``e`` is processed."""
        return any(Token.PSK in message for message in self.messages)

    @property
    def psk_count(self) -> int:
        """How many PSKs each side must supply, in order of use."""
        return sum(message.count(Token.PSK) for message in self.messages)


def _parse_tokens(text: str) -> tuple[Token, ...]:
    try:
        return tuple(Token(word.strip()) for word in text.split(","))
    except ValueError as exc:
        raise LocalProtocolError(f"unknown token in {text!r}") from exc


def _check_rules(pattern: HandshakePattern) -> None:
    """Enforce spec section 7.3: keys sent once, DH only between existing keys."""
    sent: tuple[set[Token], set[Token]] = (set(), set())  # initiator's, responder's
    for side, pre in enumerate((pattern.initiator_pre_message, pattern.responder_pre_message)):
        sent[side].update(pre)
    for index, message in enumerate(pattern.messages):
        side = index % 2
        for token in message:
            if token in (Token.E, Token.S):
                if token in sent[side]:
                    raise LocalProtocolError(f"{pattern.name}: {token.value} sent twice")
                sent[side].add(token)
            elif token in DH_TOKEN_KEYS:
                init_key, resp_key = DH_TOKEN_KEYS[token]
                if init_key not in sent[0] or resp_key not in sent[1]:
                    raise LocalProtocolError(f"{pattern.name}: {token.value} before its keys")


def parse_pattern(name: str, source: str) -> HandshakePattern:
    """Parse a pattern written in spec notation (``-> e`` lines, ``...`` after pre-messages)."""
    lines = [line.strip() for line in source.strip().splitlines() if line.strip()]
    pre_lines: list[str] = []
    if "..." in lines:
        split_at = lines.index("...")
        pre_lines, lines = lines[:split_at], lines[split_at + 1 :]
    pre: dict[str, tuple[Token, ...]] = {"->": (), "<-": ()}
    for line in pre_lines:
        arrow, tokens = line[:2], _parse_tokens(line[2:])
        if arrow not in pre or pre[arrow] or not set(tokens) <= {Token.E, Token.S}:
            raise LocalProtocolError(f"{name}: bad pre-message {line!r}")
        pre[arrow] = tokens
    messages = []
    for index, line in enumerate(lines):
        expected = "->" if index % 2 == 0 else "<-"
        if not line.startswith(expected):
            raise LocalProtocolError(f"{name}: message {index + 1} must start with {expected}")
        messages.append(_parse_tokens(line[2:]))
    if not messages:
        raise LocalProtocolError(f"{name}: no handshake messages")
    pattern = HandshakePattern(
        name=name,
        initiator_pre_message=pre["->"],
        responder_pre_message=pre["<-"],
        messages=tuple(messages),
    )
    _check_rules(pattern)
    return pattern


def _apply_psk(pattern: HandshakePattern, modifier: str) -> HandshakePattern:
    position = int(modifier[len("psk") :])
    if position > len(pattern.messages):
        raise UnsupportedProtocolError(f"{modifier} needs {position} messages in {pattern.name}")
    messages = list(pattern.messages)
    if position == 0:
        messages[0] = (Token.PSK, *messages[0])
    else:
        messages[position - 1] = (*messages[position - 1], Token.PSK)
    return HandshakePattern(
        name=pattern.name,
        initiator_pre_message=pattern.initiator_pre_message,
        responder_pre_message=pattern.responder_pre_message,
        messages=tuple(messages),
    )


_NAME_RE = re.compile(
    r"(?P<base>[A-Z][A-Z0-9]*)(?P<modifiers>[a-z][a-z0-9]*(?:\+[a-z][a-z0-9]*)*)?"
)
_PSK_MODIFIER_RE = re.compile(r"psk[0-9]+")


def pattern_by_name(name: str) -> HandshakePattern:
    """Return the pattern called *name*, modifiers applied (``"XX"``, ``"IKpsk2"``).

    Raises:
        UnsupportedProtocolError: unknown base pattern or modifier (e.g. fallback).
    """
    match = _NAME_RE.fullmatch(name)
    if match is None or match["base"] not in BASE_PATTERNS:
        raise UnsupportedProtocolError(f"unknown handshake pattern {name!r}")
    pattern = BASE_PATTERNS[match["base"]]
    modifiers = match["modifiers"].split("+") if match["modifiers"] else []
    for modifier in modifiers:
        if _PSK_MODIFIER_RE.fullmatch(modifier) is None:
            raise UnsupportedProtocolError(f"unsupported pattern modifier {modifier!r} in {name!r}")
        pattern = _apply_psk(pattern, modifier)
    return HandshakePattern(
        name=name,
        initiator_pre_message=pattern.initiator_pre_message,
        responder_pre_message=pattern.responder_pre_message,
        messages=pattern.messages,
    )


# fmt: off
#: Every pattern of spec sections 7.4-7.6, verbatim.  Order: one-way, fundamental
#: interactive, deferred.
PATTERN_SOURCES: dict[str, str] = {
    "N":    "<- s\n...\n-> e, es",
    "K":    "-> s\n<- s\n...\n-> e, es, ss",
    "X":    "<- s\n...\n-> e, es, s, ss",
    "NN":   "-> e\n<- e, ee",
    "NK":   "<- s\n...\n-> e, es\n<- e, ee",
    "NX":   "-> e\n<- e, ee, s, es",
    "XN":   "-> e\n<- e, ee\n-> s, se",
    "XK":   "<- s\n...\n-> e, es\n<- e, ee\n-> s, se",
    "XX":   "-> e\n<- e, ee, s, es\n-> s, se",
    "KN":   "-> s\n...\n-> e\n<- e, ee, se",
    "KK":   "-> s\n<- s\n...\n-> e, es, ss\n<- e, ee, se",
    "KX":   "-> s\n...\n-> e\n<- e, ee, se, s, es",
    "IN":   "-> e, s\n<- e, ee, se",
    "IK":   "<- s\n...\n-> e, es, s, ss\n<- e, ee, se",
    "IX":   "-> e, s\n<- e, ee, se, s, es",
    "NK1":  "<- s\n...\n-> e\n<- e, ee, es",
    "NX1":  "-> e\n<- e, ee, s\n-> es",
    "X1N":  "-> e\n<- e, ee\n-> s\n<- se",
    "X1K":  "<- s\n...\n-> e, es\n<- e, ee\n-> s\n<- se",
    "XK1":  "<- s\n...\n-> e\n<- e, ee, es\n-> s, se",
    "X1K1": "<- s\n...\n-> e\n<- e, ee, es\n-> s\n<- se",
    "X1X":  "-> e\n<- e, ee, s, es\n-> s\n<- se",
    "XX1":  "-> e\n<- e, ee, s\n-> es, s, se",
    "X1X1": "-> e\n<- e, ee, s\n-> es, s\n<- se",
    "K1N":  "-> s\n...\n-> e\n<- e, ee\n-> se",
    "K1K":  "-> s\n<- s\n...\n-> e, es\n<- e, ee\n-> se",
    "KK1":  "-> s\n<- s\n...\n-> e\n<- e, ee, se, es",
    "K1K1": "-> s\n<- s\n...\n-> e\n<- e, ee, es\n-> se",
    "K1X":  "-> s\n...\n-> e\n<- e, ee, s, es\n-> se",
    "KX1":  "-> s\n...\n-> e\n<- e, ee, se, s\n-> es",
    "K1X1": "-> s\n...\n-> e\n<- e, ee, s\n-> se, es",
    "I1N":  "-> e, s\n<- e, ee\n-> se",
    "I1K":  "<- s\n...\n-> e, es, s\n<- e, ee\n-> se",
    "IK1":  "<- s\n...\n-> e, s\n<- e, ee, se, es",
    "I1K1": "<- s\n...\n-> e, s\n<- e, ee, es\n-> se",
    "I1X":  "-> e, s\n<- e, ee, s, es\n-> se",
    "IX1":  "-> e, s\n<- e, ee, se, s\n-> es",
    "I1X1": "-> e, s\n<- e, ee, s\n-> se, es",
}
# fmt: on

#: Parsed base patterns (no modifiers), checked against spec section 7.3 at import.
BASE_PATTERNS: dict[str, HandshakePattern] = {
    name: parse_pattern(name, source) for name, source in PATTERN_SOURCES.items()
}
