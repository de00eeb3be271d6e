"""Reading tensors out of a Hugging Face safetensors checkpoint directory.

A checkpoint is ``model.safetensors`` or, when sharded, ``model.safetensors.index.json``
whose ``weight_map`` names the shard file holding each tensor. Only the keys a stage
asks for are read: ``safe_open`` memory-maps each file and parses its header, so
reading layers [2, 4) of a 70-layer model touches the pages of those tensors only.

Nothing here unpickles: safetensors is a JSON header plus raw little-endian bytes, and
``torch.load`` is never called. Shapes and dtypes are checked against the header before
a tensor is read, so a wrong checkpoint fails with the key and file named, before any
memory is spent on it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from vramancer_node.runtime.errors import CheckpointError

SINGLE_FILE_NAME = "model.safetensors"
INDEX_FILE_NAME = "model.safetensors.index.json"
INDEX_FILE_BYTES_MAX = 64 << 20
"""The index of a 400B-parameter model is a few MB; 64 MiB is not an index."""

FLOAT_DTYPES = ("F32", "F16", "BF16")
"""safetensors dtype tags a Llama-family weight may be stored in."""


class Checkpoint:
    """The tensor files of one checkpoint directory and which key lives in which.

    Construction reads the index (or the single file's header); ``load`` reads tensors.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        index_path = self.directory / INDEX_FILE_NAME
        single_path = self.directory / SINGLE_FILE_NAME
        if index_path.exists():
            self._file_of_key = _read_index(index_path)
        elif single_path.exists():
            self._file_of_key = dict.fromkeys(_header_keys(single_path), SINGLE_FILE_NAME)
        else:
            raise CheckpointError(
                f"{self.directory}: neither {SINGLE_FILE_NAME} nor {INDEX_FILE_NAME} found"
            )

    def __contains__(self, key: object) -> bool:
        return key in self._file_of_key

    def file_of(self, key: str) -> Path:
        """The file holding ``key``; CheckpointError if the checkpoint has no such key."""
        try:
            return self.directory / self._file_of_key[key]
        except KeyError:
            raise CheckpointError(f"{self.directory}: missing tensor {key!r}") from None

    def load(
        self,
        expected_shapes: Mapping[str, tuple[int, ...]],
        *,
        dtype: torch.dtype,
        device: torch.device,
    ) -> dict[str, torch.Tensor]:
        """Read exactly the keys of ``expected_shapes``, check their shapes, and return
        them converted to ``dtype`` on ``device``."""
        by_file: dict[Path, list[str]] = {}
        for key in expected_shapes:
            by_file.setdefault(self.file_of(key), []).append(key)
        tensors: dict[str, torch.Tensor] = {}
        for path, keys in by_file.items():
            try:
                with safe_open(str(path), framework="pt") as file:
                    present = set(file.keys())
                    for key in keys:
                        if key not in present:
                            raise CheckpointError(f"{path}: missing tensor {key!r}")
                        tensor = _read_checked(file, path, key, expected_shapes[key])
                        tensors[key] = tensor.to(device=device, dtype=dtype)
            except (SafetensorError, OSError) as exc:
                raise CheckpointError(f"{path}: unreadable safetensors file: {exc}") from exc
        return tensors


def _read_checked(file: object, path: Path, key: str, expected: tuple[int, ...]) -> torch.Tensor:
    """Check shape and dtype from the header, then read the tensor."""
    tensor_slice = file.get_slice(key)  # type: ignore[attr-defined]
    shape = tuple(tensor_slice.get_shape())
    if shape != expected:
        raise CheckpointError(
            f"{path}: tensor {key!r} has shape {list(shape)}, expected {list(expected)}"
        )
    tag = tensor_slice.get_dtype()
    if tag not in FLOAT_DTYPES:
        raise CheckpointError(
            f"{path}: tensor {key!r} has dtype {tag}, expected one of {', '.join(FLOAT_DTYPES)}"
        )
    tensor: torch.Tensor = file.get_tensor(key)  # type: ignore[attr-defined]
    return tensor


def _header_keys(path: Path) -> list[str]:
    try:
        with safe_open(str(path), framework="pt") as file:
            return list(file.keys())
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: unreadable safetensors file: {exc}") from exc


def _read_index(path: Path) -> dict[str, str]:
    try:
        with path.open("rb") as file:
            data = file.read(INDEX_FILE_BYTES_MAX + 1)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc}") from exc
    if len(data) > INDEX_FILE_BYTES_MAX:
        raise CheckpointError(f"{path}: larger than {INDEX_FILE_BYTES_MAX} bytes")
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON: {exc}") from exc
    weight_map = raw.get("weight_map") if isinstance(raw, dict) else None
    if not isinstance(weight_map, dict):
        raise CheckpointError(f"{path}: no 'weight_map' object")
    for key, file_name in weight_map.items():
        # Shard names come from whoever wrote the directory (later: a peer); a name that
        # leaves the directory is refused, not followed.
        if (
            not isinstance(file_name, str)
            or file_name in ("", ".", "..")
            or Path(file_name).name != file_name
        ):
            raise CheckpointError(f"{path}: tensor {key!r} maps to bad file name {file_name!r}")
    return weight_map
