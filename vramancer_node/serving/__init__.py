"""Serving: tokenizers, chat templates and the OpenAI-compatible HTTP API.

Theory of operation
-------------------
A client speaks text; the runtime speaks token ids.  This package sits between them:

* ``tokenizer`` — :func:`load_tokenizer` reads a checkpoint's ``tokenizer.json`` (or
  falls back to UTF-8 bytes), its special tokens and its chat template
  (``chat_template``, rendered sandboxed);
* ``detokenize`` — streamed token ids back to text without ever splitting a
  character;
* ``generator`` — the :class:`TextGenerator` boundary the API generates through, and
  a single-process implementation on :mod:`vramancer_node.runtime`;
* ``stops`` — stop strings found across token boundaries;
* ``textgen`` — a request's context check and sampling parameters, and the token
  stream turned into text pieces;
* ``openai`` — ``/v1/models``, ``/v1/completions`` and ``/v1/chat/completions``,
  streamed (server-sent events) or not, with OpenAI's error shape.
"""
