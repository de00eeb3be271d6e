"""Tensors to activation bodies and back, without pickle and without torch.load.

A body is the tensor's raw bytes, C-contiguous, in the byte order of the machine
(little-endian on every platform this runs on; see :data:`NATIVE_LITTLE_ENDIAN`).
Received bytes are viewed in place (``torch.frombuffer`` over the BULK frame's
``bytearray``): one copy from the socket, none here.
"""

from __future__ import annotations

import sys
import warnings

import torch

from protocol.pipeline import ActivationHeader, check_body

NATIVE_LITTLE_ENDIAN = sys.byteorder == "little"
TORCH_DTYPE_OF_TAG: dict[str, torch.dtype] = {
    "f32": torch.float32,
    "f16": torch.float16,
    "bf16": torch.bfloat16,
    "i64": torch.int64,
}
TAG_OF_TORCH_DTYPE = {dtype: tag for tag, dtype in TORCH_DTYPE_OF_TAG.items()}

if not NATIVE_LITTLE_ENDIAN:  # pragma: no cover - no big-endian GPU host exists to test
    raise ImportError("the activation wire format is little-endian; this host is not")


def dtype_tag(tensor: torch.Tensor) -> str:
    """The wire tag of ``tensor``'s dtype (ValueError outside the allow-list)."""
    try:
        return TAG_OF_TORCH_DTYPE[tensor.dtype]
    except KeyError:
        raise ValueError(f"dtype {tensor.dtype} cannot cross the wire") from None


def tensor_body(tensor: torch.Tensor) -> memoryview:
    """The raw bytes of ``tensor`` (moved to the CPU and made contiguous if needed)."""
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    if flat.numel() == 0:
        return memoryview(b"")
    raw: bytes | memoryview = flat.view(torch.uint8).numpy().data  # no copy
    return memoryview(raw)


def body_tensor(header: ActivationHeader, body: bytearray) -> torch.Tensor:
    """View ``body`` as the tensor ``header`` announces (BodyLengthError if it cannot be)."""
    check_body(header, len(body))
    dtype = TORCH_DTYPE_OF_TAG[header.dtype]
    if not body:
        return torch.empty(header.shape, dtype=dtype)
    with warnings.catch_warnings():
        # frombuffer warns that the buffer is writable and shared: that is the point.
        warnings.simplefilter("ignore", UserWarning)
        flat = torch.frombuffer(body, dtype=dtype)
    return flat.reshape(header.shape)
