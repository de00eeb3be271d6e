"""Errors of weight distribution.

::

    Exception
    └── WeightsError                 a checkpoint's files could not be served or fetched
        ├── NoSourceError            no live member has the model (or that file of it)
        ├── PeerRefusedError         a member answered with an error (``code``)
        ├── CorruptTransferError     the bytes received do not hash to the manifest's
        │                            SHA-256 (the ``.part`` file was discarded)
        └── FetchFailedError         every source was tried; ``attempts`` says how each
                                     one failed

Transport trouble (a cut connection, a timeout, a handshake refusal) is not an error
of its own: the fetcher resumes or moves to the next source, and only reports it in
:class:`FetchFailedError` when nothing worked.
"""

from __future__ import annotations

from collections.abc import Sequence


class WeightsError(Exception):
    """A checkpoint's files could not be served or fetched."""


class NoSourceError(WeightsError):
    """No live member reports the model (or the file asked for)."""


class PeerRefusedError(WeightsError):
    """A member answered a weights request with an error."""

    def __init__(self, address: str, code: str, detail: str) -> None:
        super().__init__(f"{address} refused: {code}: {detail}")
        self.address = address
        self.code = code


class CorruptTransferError(WeightsError):
    """Received bytes do not match the manifest's size or SHA-256."""


class FetchFailedError(WeightsError):
    """Every source of a file failed."""

    def __init__(self, model_id: str, file_name: str, attempts: Sequence[str]) -> None:
        tried = "; ".join(attempts) or "no source"
        super().__init__(f"could not fetch {model_id}/{file_name}: {tried}")
        self.attempts = tuple(attempts)
