"""Errors a generation reports to its caller.

::

    PipelineError                 a generation could not run (the message says why)
    ├── UnknownModelError         the model is not in this node's runtime.models
    ├── ContextTooLongError       the prompt is longer than the reserved context
    ├── PlacementUnavailableError no placement: no members, or the model fits nowhere
    └── StageError                a stage refused or failed; ``code`` is the wire word
        └── StaleEpochError       a stage runs another placement epoch (fencing)

``StageError.code`` is one of :data:`protocol.pipeline.activations.ERROR_CODES`;
``node_id`` names the stage that reported it when known.
"""

from __future__ import annotations


class PipelineError(Exception):
    """A generation could not run."""


class UnknownModelError(PipelineError):
    """No checkpoint of that name in ``runtime.models``."""


class ContextTooLongError(PipelineError):
    """The prompt does not fit the context reserved per session."""


class PlacementUnavailableError(PipelineError):
    """No placement of the model could be found or computed."""


class StageError(PipelineError):
    """A stage of the chain refused the session or failed."""

    def __init__(self, code: str, detail: str, node_id: str | None = None) -> None:
        where = f" (stage on node {node_id})" if node_id else ""
        super().__init__(f"{code}: {detail}{where}")
        self.code = code
        self.detail = detail
        self.node_id = node_id


class StaleEpochError(StageError):
    """A stage holds another placement epoch than the request's."""
