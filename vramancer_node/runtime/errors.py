"""Errors of the model runtime.

::

    Exception
    ├── CheckpointError      the checkpoint on disk is unusable (names the file and key)
    └── KVCacheFullError     a session asked for more positions than its cache bound

Misuse of the API (a stage fed token ids it cannot embed, positions that skip ahead of
the cache) raises the built-in ``ValueError``: that is the caller's fault, not the
checkpoint's.
"""

from __future__ import annotations


class CheckpointError(Exception):
    """A checkpoint directory cannot be loaded: missing or malformed config, missing
    tensor, wrong shape, unsupported architecture, corrupt safetensors file.

    The message names the offending file and, where there is one, the key.
    """


class KVCacheFullError(Exception):
    """A KV cache would grow past its bound (``max_tokens``)."""
