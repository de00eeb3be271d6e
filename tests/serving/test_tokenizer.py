"""Tokenizers loaded from real checkpoint directories: tokenizer.json through the
``tokenizers`` library, special tokens, the byte-level fallback, streaming decode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.serving.kit import SENTENCES, write_llama3_tokenizer, write_qwen2_tokenizer
from vramancer_node.serving.detokenize import PENDING_TOKENS_MAX, REPLACEMENT_CHAR
from vramancer_node.serving.errors import TokenizerError, UnencodableTextError
from vramancer_node.serving.tokenizer import (
    BYTE_BOS_ID,
    BYTE_EOS_ID,
    BYTE_OFFSET,
    ByteTokenizer,
    HFTokenizer,
    Tokenizer,
    load_tokenizer,
)

MIXED_TEXT = "Héllo wörld 🙂 日本語 déjà vu 🚀!"


def test_llama3_style_tokenizer_adds_bos_and_reads_every_eos(tmp_path: Path) -> None:
    backend = write_llama3_tokenizer(tmp_path)
    tokenizer = load_tokenizer(tmp_path)
    assert isinstance(tokenizer, HFTokenizer)
    bos = backend.token_to_id("<|begin_of_text|>")
    ids = tokenizer.encode("Hello world!")
    assert ids[0] == bos and ids[1:] == backend.encode("Hello world!").ids[1:]
    assert tokenizer.encode("Hello world!", add_special_tokens=False) == ids[1:]
    assert tokenizer.bos_token_id == bos
    # tokenizer_config's eos_token first, then generation_config's list, no repeats.
    eot, end = backend.token_to_id("<|eot_id|>"), backend.token_to_id("<|end_of_text|>")
    assert tokenizer.eos_token_ids == (eot, end)
    assert tokenizer.decode(ids) == "Hello world!"  # BOS skipped


def test_qwen2_style_tokenizer_adds_nothing(tmp_path: Path) -> None:
    backend = write_qwen2_tokenizer(tmp_path)
    tokenizer = load_tokenizer(tmp_path)
    assert tokenizer.encode("Hello cluster") == backend.encode("Hello cluster").ids
    assert tokenizer.bos_token_id is None
    assert tokenizer.eos_token_ids == (backend.token_to_id("<|im_end|>"),)


def test_add_bos_token_prepends_when_the_post_processor_does_not(tmp_path: Path) -> None:
    backend = write_qwen2_tokenizer(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config.update(bos_token="<|endoftext|>", add_bos_token=True)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    tokenizer = load_tokenizer(tmp_path)
    bos = backend.token_to_id("<|endoftext|>")
    assert tokenizer.encode("Hello") == [bos, *backend.encode("Hello").ids]
    assert tokenizer.encode("Hello", add_special_tokens=False) == backend.encode("Hello").ids


def test_byte_fallback_layout(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"vocab_size": 300}))
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": 7}))
    tokenizer = load_tokenizer(tmp_path)
    assert isinstance(tokenizer, ByteTokenizer)
    assert tokenizer.encode("Aé") == [BYTE_BOS_ID, 0x41 + 3, 0xC3 + 3, 0xA9 + 3]
    assert tokenizer.encode("A", add_special_tokens=False) == [0x41 + BYTE_OFFSET]
    assert tokenizer.eos_token_ids == (BYTE_EOS_ID, 7)
    assert tokenizer.decode([BYTE_BOS_ID, 0x41 + 3, BYTE_EOS_ID, 0xC3 + 3, 0xA9 + 3]) == "Aé"
    assert tokenizer.decode([299]) == ""  # maps to no byte


def test_byte_fallback_refuses_bytes_outside_a_small_vocabulary(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"vocab_size": 96}))
    tokenizer = load_tokenizer(tmp_path)
    assert tokenizer.encode("ABC 12") == [BYTE_BOS_ID, *(b + 3 for b in b"ABC 12")]
    with pytest.raises(UnencodableTextError, match=r"byte 0x61 at byte offset 1"):
        tokenizer.encode("Aa")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("tokenizer.json", "{not json"),
        ("tokenizer.json", json.dumps({"model": {"type": "Nope"}})),
        ("tokenizer_config.json", "[1, 2]"),
        ("generation_config.json", "nope"),
    ],
)
def test_corrupt_tokenizer_files_are_named(tmp_path: Path, name: str, content: str) -> None:
    write_llama3_tokenizer(tmp_path)
    (tmp_path / name).write_text(content)
    with pytest.raises(TokenizerError, match=name.replace(".", r"\.")):
        load_tokenizer(tmp_path)


def test_a_template_that_does_not_compile_is_a_tokenizer_error(tmp_path: Path) -> None:
    write_llama3_tokenizer(tmp_path, chat_template="{% for m in messages %}")
    with pytest.raises(TokenizerError, match="does not compile"):
        load_tokenizer(tmp_path)


def _stream(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    decoder = tokenizer.incremental_decoder()
    deltas = [decoder.push(token) for token in ids]
    deltas.append(decoder.flush())
    return deltas


@pytest.mark.parametrize("text", [MIXED_TEXT, *SENTENCES])
def test_streamed_text_is_whole_characters_and_adds_up(tmp_path: Path, text: str) -> None:
    write_llama3_tokenizer(tmp_path)
    tokenizer = load_tokenizer(tmp_path)
    ids = tokenizer.encode(text)
    deltas = _stream(tokenizer, ids)
    assert "".join(deltas) == text
    assert not any(REPLACEMENT_CHAR in delta for delta in deltas)
    # The test can fail: decoding token by token alone would break characters.
    assert any(REPLACEMENT_CHAR in tokenizer.decode([token]) for token in ids) or text.isascii()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_byte_fallback_streams_any_text(text: str) -> None:
    tokenizer = ByteTokenizer(vocab_size=None)
    deltas = _stream(tokenizer, tokenizer.encode(text))
    assert "".join(deltas) == text
    if REPLACEMENT_CHAR not in text:
        assert not any(REPLACEMENT_CHAR in delta for delta in deltas)


def test_invalid_bytes_are_emitted_after_the_pending_bound() -> None:
    tokenizer = ByteTokenizer(vocab_size=None)
    decoder = tokenizer.incremental_decoder()
    lone_lead_bytes = [0xE2 + BYTE_OFFSET] * PENDING_TOKENS_MAX
    deltas = [decoder.push(token) for token in lone_lead_bytes]
    assert deltas[:-1] == [""] * (PENDING_TOKENS_MAX - 1)
    assert deltas[-1] == REPLACEMENT_CHAR * PENDING_TOKENS_MAX


def test_sentencepiece_style_spaces_survive_streaming(tmp_path: Path) -> None:
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    backend = RustTokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()  # Llama 2 / Mistral: "▁" for spaces
    backend.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False
    )
    backend.train_from_iterator(SENTENCES, trainer)
    backend.save(str(tmp_path / "tokenizer.json"))
    tokenizer = load_tokenizer(tmp_path)
    text = "The quick brown fox jumps over the lazy dog."
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert "".join(_stream(tokenizer, ids)) == text
    # Decoded one by one, the tokens lose their leading spaces: the test can fail.
    assert "".join(tokenizer.decode([token]) for token in ids) != text
