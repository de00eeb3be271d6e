"""Errors of the pipeline wire codecs: whose fault, and what exactly was wrong.

::

    RemoteProtocolError                   (protocol.errors: the peer's fault)
    └── ActivationError                   an activation message or stage open is malformed
        ├── ActivationHeaderError         not msgpack, not a map, wrong keys or value types
        ├── UnsupportedVersionError       a header version this node does not speak
        ├── UnsupportedDtypeError         a dtype outside the allow-list
        ├── ActivationShapeError          rank or sizes out of bounds, or wrong for the kind
        └── BodyLengthError               body bytes != prod(shape) * itemsize

Encoding a bad header on our side raises :class:`protocol.errors.LocalProtocolError`.
"""

from __future__ import annotations

from protocol.errors import RemoteProtocolError


class ActivationError(RemoteProtocolError):
    """A pipeline message from a peer cannot be accepted."""


class ActivationHeaderError(ActivationError):
    """The header is not a strict msgpack map of the expected keys and types."""


class UnsupportedVersionError(ActivationError):
    """The header's version is not one this node speaks."""


class UnsupportedDtypeError(ActivationError):
    """The dtype is not in :data:`protocol.pipeline.activations.DTYPE_ITEMSIZE`."""


class ActivationShapeError(ActivationError):
    """The shape's rank or sizes are out of bounds, or do not fit the message kind."""


class BodyLengthError(ActivationError):
    """The raw tensor bytes do not have the length the header announces."""
