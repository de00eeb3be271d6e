"""Incremental detokenisation: token ids in, text deltas out, never half a character.

Theory of operation
-------------------
One token is not one piece of text.  A byte-level BPE token can hold the first byte of
a three-byte UTF-8 character; a SentencePiece token's leading space only appears when
the token is decoded after another one.  Decoding each token alone would therefore emit
U+FFFD replacement characters and lose spaces.

So the decoder keeps two offsets into the ids generated so far (the scheme of Hugging
Face text-generation-inference and vLLM):

* ``prefix_offset``: where a small context window starts (the tokens of the previous
  delta), decoded again so that tokens joining it render as they would in the full
  text;
* ``read_offset``: the end of what was already emitted.

Each new token decodes ``ids[prefix_offset:read_offset]`` and ``ids[prefix_offset:]``;
the new text is the second minus the first.  When the new text is empty or ends in
U+FFFD (an incomplete character), nothing is emitted and the token waits for the next
one.  :meth:`IncrementalDecoder.flush` emits whatever is left at the end.

Bounds: a window never holds more than ``PENDING_TOKENS_MAX`` unemitted tokens; past
that the text is emitted as it decodes (no UTF-8 character spans that many tokens, so
the replacement character there is the text's own).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

REPLACEMENT_CHAR = "\ufffd"
PENDING_TOKENS_MAX = 16
"""Unemitted tokens after which text is emitted even if it ends in U+FFFD."""


class IncrementalDecoder:
    """Turns a stream of token ids into text deltas for one generation."""

    def __init__(self, decode: Callable[[Sequence[int]], str]) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0

    @property
    def token_count(self) -> int:
        return len(self._ids)

    def push(self, token_id: int) -> str:
        """Add one generated token; return the text it completes (possibly ``""``)."""
        self._ids.append(token_id)
        return self._delta(force=len(self._ids) - self._read_offset >= PENDING_TOKENS_MAX)

    def flush(self) -> str:
        """The text still held back (end of generation)."""
        return self._delta(force=True)

    def text(self) -> str:
        """All the text of the ids pushed so far, decoded at once."""
        return self._decode(self._ids)

    def _delta(self, *, force: bool) -> str:
        if self._read_offset == len(self._ids):
            return ""
        prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        new_text = self._decode(self._ids[self._prefix_offset :])
        if len(new_text) <= len(prefix_text) and not force:
            return ""  # a special token skipped, or a piece that renders only later
        if new_text.endswith(REPLACEMENT_CHAR) and not force:
            return ""
        self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)
        return new_text[len(prefix_text) :]
