"""Chat templates: real Llama 3 and Qwen2 templates give the ids transformers gives,
the default template, and the sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.serving.kit import QWEN2_CHAT_TEMPLATE, write_llama3_tokenizer, write_qwen2_tokenizer
from vramancer_node.serving.chat_template import DEFAULT_CHAT_TEMPLATE, ChatTemplate
from vramancer_node.serving.errors import ChatTemplateError, TokenizerError
from vramancer_node.serving.tokenizer import BYTE_BOS_ID, ByteTokenizer, load_tokenizer

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "  Hello cluster!  "},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "Déjà vu 🙂?"},
]


def _transformers_ids(directory: Path, messages: list[dict[str, str]]) -> list[int]:
    from transformers import PreTrainedTokenizerFast

    reference = PreTrainedTokenizerFast.from_pretrained(str(directory))
    ids = reference.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if not isinstance(ids, list):  # transformers >= 5 returns a BatchEncoding
        ids = ids["input_ids"]
    return list(ids)


@pytest.mark.parametrize("writer", [write_llama3_tokenizer, write_qwen2_tokenizer])
def test_real_templates_match_transformers(tmp_path: Path, writer: object) -> None:
    writer(tmp_path)  # type: ignore[operator]
    tokenizer = load_tokenizer(tmp_path)
    ids = tokenizer.apply_chat_template(MESSAGES)
    assert ids == _transformers_ids(tmp_path, MESSAGES)
    assert ids.count(tokenizer.bos_token_id) <= 1 if tokenizer.bos_token_id is not None else True


def test_llama3_template_text(tmp_path: Path) -> None:
    write_llama3_tokenizer(tmp_path)
    tokenizer = load_tokenizer(tmp_path)
    text = tokenizer.chat_template.render(MESSAGES[1:2])
    assert text == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello cluster!<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    ids = tokenizer.apply_chat_template(MESSAGES[1:2])
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    assert tokenizer.decode(ids) == "user\n\nHello cluster!assistant\n\n"


def test_chat_template_jinja_file_wins(tmp_path: Path) -> None:
    write_llama3_tokenizer(tmp_path)
    (tmp_path / "chat_template.jinja").write_text(QWEN2_CHAT_TEMPLATE)
    text = load_tokenizer(tmp_path).chat_template.render(MESSAGES[1:2])
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")


def test_a_list_of_named_templates_uses_default(tmp_path: Path) -> None:
    write_llama3_tokenizer(
        tmp_path,
        chat_template=[
            {"name": "tool_use", "template": "TOOLS"},
            {"name": "default", "template": "{{ messages[0]['content'] }}"},
        ],
    )
    assert load_tokenizer(tmp_path).chat_template.render(MESSAGES[:1]) == "You are terse."
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config["chat_template"] = [{"name": "tool_use", "template": "TOOLS"}]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(TokenizerError, match="without a 'default'"):
        load_tokenizer(tmp_path)


def test_default_template_without_special_tokens() -> None:
    tokenizer = ByteTokenizer(vocab_size=None)
    assert tokenizer.chat_template.source == DEFAULT_CHAT_TEMPLATE
    text = tokenizer.chat_template.render(MESSAGES[:2])
    assert text == "<|system|>\nYou are terse.\n<|user|>\n  Hello cluster!  \n<|assistant|>\n"
    assert tokenizer.apply_chat_template(MESSAGES[:2]) == tokenizer.encode(text)
    assert tokenizer.apply_chat_template(MESSAGES[:2])[0] == BYTE_BOS_ID
    no_prompt = tokenizer.chat_template.render(MESSAGES[:1], add_generation_prompt=False)
    assert no_prompt == "<|system|>\nYou are terse.\n"


@pytest.mark.parametrize(
    ("source", "match"),
    [
        ("{{ messages.__class__.__mro__ }}", "unsafe|access"),
        ("{{ messages[0].__class__.__subclasses__() }}", "unsafe|access"),
        ("{% set _ = messages.append({'role': 'x'}) %}", "unsafe|immutable|access"),
        ("{{ raise_exception('no system role') }}", "no system role"),
        ("{{ messages[5]['content'] }}", "failed"),
    ],
)
def test_templates_run_sandboxed(source: str, match: str) -> None:
    template = ChatTemplate(source)
    with pytest.raises(ChatTemplateError, match=match):
        template.render(MESSAGES)


def test_tojson_does_not_escape_html() -> None:
    template = ChatTemplate("{{ messages[0] | tojson }}")
    assert template.render([{"role": "user", "content": "<b>&</b>"}]) == (
        '{"role": "user", "content": "<b>&</b>"}'
    )
