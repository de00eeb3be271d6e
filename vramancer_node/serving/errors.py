"""Errors of the serving layer.

::

    Exception
    ├── TokenizerError          the checkpoint's tokenizer files are unusable
    ├── ChatTemplateError       the chat template does not compile or fails to render
    ├── UnencodableTextError    text the byte-level fallback cannot map into the vocabulary
    ├── GenerationError         the model could not run (checkpoint, pipeline, runtime)
    └── RequestError            a client request is wrong (HTTP 400/404 in OpenAI's shape)
        └── ModelNotFoundError  the request names a model this node does not serve

``RequestError`` carries what OpenAI's error object needs (``type``, ``param``,
``code``) so the HTTP layer translates it in one place.
"""

from __future__ import annotations


class TokenizerError(Exception):
    """``tokenizer.json``, ``tokenizer_config.json`` or ``generation_config.json`` of a
    checkpoint cannot be used; the message names the file."""


class ChatTemplateError(Exception):
    """A chat template does not compile, raised ``raise_exception``, or broke the
    sandbox's rules while rendering."""


class GenerationError(Exception):
    """A generation failed on the server's side: an unusable checkpoint, a pipeline
    stage that refused or died.  A :class:`TextGenerator` translates its own errors
    into this one (``raise GenerationError(...) from exc``) so the API maps one type."""


class RequestError(Exception):
    """A client request the server refuses (the client's fault)."""

    status_code = 400
    error_type = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class ModelNotFoundError(RequestError):
    """The request names a model this node does not serve."""

    status_code = 404

    def __init__(self, model: str) -> None:
        super().__init__(
            f"The model {model!r} does not exist on this node",
            param="model",
            code="model_not_found",
        )


class UnencodableTextError(Exception):
    """Text the tokenizer cannot represent with the model's vocabulary (the byte-level
    fallback of a model whose vocabulary is smaller than 256 bytes + specials)."""
