"""Unusable checkpoints fail with CheckpointError naming the file and the problem."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.runtime.kit import tiny_config, write_checkpoint
from vramancer_node.runtime import CheckpointError, load_stage
from vramancer_node.runtime.checkpoint import INDEX_FILE_NAME, SINGLE_FILE_NAME


def load_all(directory: Path, **kwargs: Any) -> None:
    load_stage(directory, 0, 4, has_embedding=True, has_head=True, **kwargs)


def rewrite_tensors(directory: Path, edit: Any) -> None:
    path = directory / SINGLE_FILE_NAME
    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path))


def test_missing_tensor(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, tiny_config())
    rewrite_tensors(tmp_path, lambda t: t.pop("model.layers.3.mlp.up_proj.weight"))
    with pytest.raises(CheckpointError, match=r"missing tensor 'model\.layers\.3\.mlp\.up_proj"):
        load_all(tmp_path)
    # A stage that does not need the tensor does not care.
    load_stage(tmp_path, 0, 3, has_embedding=True, has_head=False)


def test_missing_untied_head(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, tiny_config())
    rewrite_tensors(tmp_path, lambda t: t.pop("lm_head.weight"))
    with pytest.raises(CheckpointError, match=r"lm_head\.weight.*tie_word_embeddings"):
        load_all(tmp_path)


def test_wrong_shape(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, tiny_config())

    def edit(tensors: dict[str, torch.Tensor]) -> None:
        tensors["model.layers.1.self_attn.k_proj.weight"] = torch.zeros(8, 32)

    rewrite_tensors(tmp_path, edit)
    with pytest.raises(
        CheckpointError, match=r"k_proj\.weight' has shape \[8, 32\], expected \[16, 32\]"
    ):
        load_all(tmp_path)


def test_integer_tensor_refused(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, tiny_config())

    def edit(tensors: dict[str, torch.Tensor]) -> None:
        tensors["model.norm.weight"] = torch.zeros(32, dtype=torch.int32)

    rewrite_tensors(tmp_path, edit)
    with pytest.raises(CheckpointError, match=re.escape("model.norm.weight' has dtype I32")):
        load_all(tmp_path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model_type": "gpt2"}, "unsupported model_type 'gpt2'"),
        ({"rope_scaling": {"type": "dynamic", "factor": 2.0}}, "unsupported rope_type 'dynamic'"),
        ({"rope_parameters": {"rope_type": "yarn", "factor": 4.0}}, "unsupported rope_type 'yarn'"),
        ({"hidden_act": "gelu"}, "unsupported hidden_act"),
        ({"num_key_value_heads": 3}, "not a multiple"),
        ({"hidden_size": "32"}, "'hidden_size' is '32', expected int"),
        ({"vocab_size": None}, "missing key 'vocab_size'"),
        ({"rms_norm_eps": "tiny"}, "'rms_norm_eps' is 'tiny', expected number"),
        ({"rms_norm_eps": True}, "'rms_norm_eps' is True, expected number"),
    ],
)
def test_bad_config(tmp_path: Path, overrides: dict[str, Any], message: str) -> None:
    write_checkpoint(tmp_path, tiny_config())
    config = tiny_config(**overrides)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=re.escape("config.json")) as info:
        load_all(tmp_path)
    assert message in str(info.value)


def test_corrupt_safetensors_header(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, tiny_config())
    path = tmp_path / SINGLE_FILE_NAME
    data = bytearray(path.read_bytes())
    data[8:16] = b"{garbage"
    path.write_bytes(bytes(data))
    with pytest.raises(
        CheckpointError, match=re.escape(f"{SINGLE_FILE_NAME}: unreadable safetensors")
    ):
        load_all(tmp_path)


def test_truncated_shard(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, tiny_config(), shards=2)
    shard = tmp_path / "model-00002-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=re.escape("model-00002-of-00002.safetensors")):
        load_all(tmp_path)


def test_index_naming_a_file_outside_the_directory(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, tiny_config(), shards=2)
    index = json.loads((tmp_path / INDEX_FILE_NAME).read_text())
    index["weight_map"]["model.norm.weight"] = "../elsewhere.safetensors"
    (tmp_path / INDEX_FILE_NAME).write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=re.escape("bad file name '../elsewhere")):
        load_all(tmp_path)


def test_index_key_absent_from_its_shard(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, tiny_config(), shards=2)
    index = json.loads((tmp_path / INDEX_FILE_NAME).read_text())
    index["weight_map"]["model.norm.weight"] = "model-00001-of-00002.safetensors"
    index["weight_map"]["lm_head.weight"] = "model-00002-of-00002.safetensors"
    (tmp_path / INDEX_FILE_NAME).write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=re.escape("-of-00002.safetensors: missing tensor")):
        load_all(tmp_path)


def test_no_weights_at_all(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(tiny_config()))
    with pytest.raises(CheckpointError, match=re.escape("neither model.safetensors")):
        load_all(tmp_path)
