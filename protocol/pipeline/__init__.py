"""Pipeline wire formats: the activation messages and the stage-session open.

Pure (no torch, no I/O): the shell in :mod:`vramancer_node.pipeline` turns tensors
into bodies and back.

================  ==========================================================
``activations``   :class:`ActivationHeader`, its strict msgpack codec, body checks
``opening``       :class:`StageOpen`: model, epoch, route and sampling of a session
``errors``        :class:`ActivationError` and its subclasses (the peer's fault)
================  ==========================================================
"""

from __future__ import annotations

from protocol.pipeline.activations import (
    ACTIVATION_VERSION,
    BULK_KIND_ACTIVATION,
    DTYPE_ITEMSIZE,
    ERROR_CODES,
    SESSION_ID_BYTES,
    ActivationHeader,
    MessageKind,
    check_body,
    decode_header,
    encode_header,
    error_header,
)
from protocol.pipeline.errors import (
    ActivationError,
    ActivationHeaderError,
    ActivationShapeError,
    BodyLengthError,
    UnsupportedDtypeError,
    UnsupportedVersionError,
)
from protocol.pipeline.opening import (
    RouteStage,
    StageOpen,
    WireSampling,
    decode_stage_open,
    encode_stage_open,
)

__all__ = [
    "ACTIVATION_VERSION",
    "BULK_KIND_ACTIVATION",
    "DTYPE_ITEMSIZE",
    "ERROR_CODES",
    "SESSION_ID_BYTES",
    "ActivationError",
    "ActivationHeader",
    "ActivationHeaderError",
    "ActivationShapeError",
    "BodyLengthError",
    "MessageKind",
    "RouteStage",
    "StageOpen",
    "UnsupportedDtypeError",
    "UnsupportedVersionError",
    "WireSampling",
    "check_body",
    "decode_header",
    "decode_stage_open",
    "encode_header",
    "encode_stage_open",
    "error_header",
]
