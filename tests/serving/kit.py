"""Checkpoints with real tokenizers, built by the tests with the ``tokenizers`` library."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from tests.runtime.kit import tiny_config, write_checkpoint

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A model too big for any one device runs across all of them.",
    "Les élèves étudient à l'école; déjà vu, garçon, naïve.",
    "日本語のテキストも少し。",
    "Emoji travel too: 🙂 🚀 and numbers 1234567890.",
    "Hello world! Hello cluster! Hello pipeline!",
]

LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                   "<|end_header_id|>", "<|eot_id|>"]  # fmt: skip
QWEN2_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

LLAMA3_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] "
    "| trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
"""Meta-Llama-3-8B-Instruct's template, verbatim."""

QWEN2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""Qwen2-Instruct's template, verbatim."""

VOCAB_SIZE = 400


def train_tokenizer(specials: list[str], *, bos: str | None) -> Tokenizer:
    """A byte-level BPE tokenizer trained on SENTENCES; ``bos`` added by the
    post-processor when given (Llama 3 style), nothing added otherwise (Qwen2)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(SENTENCES, trainer)
    if bos is not None:
        bos_id = tokenizer.token_to_id(bos)
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
        )
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return tokenizer


def write_llama3_tokenizer(directory: Path, **config: Any) -> Tokenizer:
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(LLAMA3_SPECIALS, bos="<|begin_of_text|>")
    tokenizer.save(str(directory / "tokenizer.json"))
    tokenizer_config = {
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>",
        "chat_template": LLAMA3_CHAT_TEMPLATE,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "clean_up_tokenization_spaces": False,
        **config,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    eos_ids = [tokenizer.token_to_id("<|end_of_text|>"), tokenizer.token_to_id("<|eot_id|>")]
    generation = {"bos_token_id": 0, "eos_token_id": eos_ids}
    (directory / "generation_config.json").write_text(json.dumps(generation))
    return tokenizer


def write_qwen2_tokenizer(directory: Path) -> Tokenizer:
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(QWEN2_SPECIALS, bos=None)
    tokenizer.save(str(directory / "tokenizer.json"))
    tokenizer_config = {
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "chat_template": QWEN2_CHAT_TEMPLATE,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "clean_up_tokenization_spaces": False,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return tokenizer


def write_model(directory: Path, *, tokenizer: str | None = "llama3", **overrides: Any) -> Path:
    """A tiny random Llama checkpoint (vocabulary VOCAB_SIZE) with a tokenizer:
    ``llama3``, ``qwen2`` or ``None`` (the byte-level fallback)."""
    config = tiny_config(vocab_size=VOCAB_SIZE, **overrides)
    write_checkpoint(directory, config)
    if tokenizer == "llama3":
        write_llama3_tokenizer(directory)
    elif tokenizer == "qwen2":
        write_qwen2_tokenizer(directory)
    return directory
