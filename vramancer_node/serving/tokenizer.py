"""Tokenizers of a checkpoint directory: text to token ids and back.

Theory of operation
-------------------
:func:`load_tokenizer` looks in a Hugging Face checkpoint directory:

* ``tokenizer.json`` present: a :class:`HFTokenizer` backed by the ``tokenizers``
  library (the Rust one transformers' "fast" tokenizers wrap).  Its normaliser,
  pre-tokenizer, model, post-processor and decoder are all in that file; the
  post-processor adds BOS when the model wants it (Llama 3), or nothing (Qwen2).
* no ``tokenizer.json``: a :class:`ByteTokenizer`, the documented fallback.  Ids
  ``0, 1, 2`` are ``<pad>``, ``<bos>``, ``<eos>``; byte ``b`` of the UTF-8 text is id
  ``b + 3`` (:data:`BYTE_OFFSET`, the number of special tokens).  It adds ``<bos>`` in
  front of a plain prompt.  A model whose vocabulary is smaller than ``259`` cannot
  represent every byte: text with such a byte is refused (``UnencodableTextError``);
  a generated id that maps to no byte decodes to nothing.

Special tokens: BOS and EOS come from ``tokenizer_config.json`` (``bos_token``,
``eos_token``, as strings or ``{"content": ...}`` objects, looked up in the
vocabulary), ``generation_config.json`` and ``config.json`` (``bos_token_id``,
``eos_token_id``, an int or a list).  Generation stops at any of the EOS ids found.
``add_bos_token: true`` in tokenizer_config.json makes BOS be prepended to a plain
prompt when the post-processor did not already put it there (older Llama exports).

Chat: :meth:`Tokenizer.apply_chat_template` renders the messages with the checkpoint's
template (:mod:`vramancer_node.serving.chat_template`) and encodes the text without
adding special tokens (the template writes BOS itself, as transformers assumes); the
default template writes none, so its text is encoded like a plain prompt.

Decoding skips special tokens.  Streaming goes through
:meth:`Tokenizer.incremental_decoder`, which never emits half a UTF-8 character.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as RustTokenizer

from vramancer_node.serving.chat_template import ChatTemplate, template_source
from vramancer_node.serving.detokenize import IncrementalDecoder
from vramancer_node.serving.errors import ChatTemplateError, TokenizerError, UnencodableTextError

TOKENIZER_FILE_NAME = "tokenizer.json"
TOKENIZER_CONFIG_FILE_NAME = "tokenizer_config.json"
GENERATION_CONFIG_FILE_NAME = "generation_config.json"
CHAT_TEMPLATE_FILE_NAME = "chat_template.jinja"
MODEL_CONFIG_FILE_NAME = "config.json"

TOKENIZER_FILE_BYTES_MAX = 256 << 20
"""The largest published tokenizer.json files are tens of MB."""
JSON_FILE_BYTES_MAX = 16 << 20
"""tokenizer_config.json can list every added token; 16 MiB is generous."""

BYTE_SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>")
"""The fallback's special tokens, ids 0, 1, 2."""
BYTE_OFFSET = len(BYTE_SPECIAL_TOKENS)
"""Byte ``b`` is token ``b + BYTE_OFFSET`` in the fallback."""
BYTE_BOS_ID = 1
BYTE_EOS_ID = 2


class Tokenizer(abc.ABC):
    """Text to ids and back for one model, plus its special tokens and chat template."""

    kind: str
    """``tokenizers`` (tokenizer.json) or ``bytes`` (the fallback)."""
    bos_token: str | None
    bos_token_id: int | None
    eos_token: str | None
    eos_token_ids: tuple[int, ...]
    """Generation stops at any of these."""
    chat_template: ChatTemplate

    @abc.abstractmethod
    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text``; with ``add_special_tokens``, BOS and friends as the
        model expects them around a plain prompt."""

    @abc.abstractmethod
    def decode(self, token_ids: Sequence[int]) -> str:
        """Text of ``token_ids``, special tokens skipped."""

    def incremental_decoder(self) -> IncrementalDecoder:
        """A decoder for one streamed generation."""
        return IncrementalDecoder(self.decode)

    def apply_chat_template(
        self, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = True
    ) -> list[int]:
        """Token ids of a chat prompt (ChatTemplateError if the template fails)."""
        text = self.chat_template.render(messages, add_generation_prompt=add_generation_prompt)
        return self.encode(text, add_special_tokens=self.chat_template.is_default)


class HFTokenizer(Tokenizer):
    """A ``tokenizers`` tokenizer loaded from tokenizer.json."""

    kind = "tokenizers"

    def __init__(
        self,
        backend: RustTokenizer,
        *,
        bos_token: str | None,
        bos_token_id: int | None,
        eos_token: str | None,
        eos_token_ids: tuple[int, ...],
        add_bos_token: bool,
        chat_template: ChatTemplate,
    ) -> None:
        self._backend = backend
        self.bos_token = bos_token
        self.bos_token_id = bos_token_id
        self.eos_token = eos_token
        self.eos_token_ids = eos_token_ids
        self.add_bos_token = add_bos_token
        self.chat_template = chat_template

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        ids: list[int] = self._backend.encode(text, add_special_tokens=add_special_tokens).ids
        bos = self.bos_token_id
        if add_special_tokens and self.add_bos_token and bos is not None and ids[:1] != [bos]:
            ids.insert(0, bos)
        return ids

    def decode(self, token_ids: Sequence[int]) -> str:
        text: str = self._backend.decode(list(token_ids), skip_special_tokens=True)
        return text


class ByteTokenizer(Tokenizer):
    """The fallback: UTF-8 bytes offset by the special tokens (see the module doc)."""

    kind = "bytes"

    def __init__(
        self,
        *,
        vocab_size: int | None,
        eos_token_ids: tuple[int, ...] = (BYTE_EOS_ID,),
        chat_template: ChatTemplate | None = None,
    ) -> None:
        self.vocab_size = vocab_size
        self.bos_token = BYTE_SPECIAL_TOKENS[BYTE_BOS_ID]
        self.bos_token_id = BYTE_BOS_ID
        self.eos_token = BYTE_SPECIAL_TOKENS[BYTE_EOS_ID]
        self.eos_token_ids = eos_token_ids
        self.chat_template = chat_template or ChatTemplate.default()

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        ids = [byte + BYTE_OFFSET for byte in text.encode("utf-8")]
        if self.vocab_size is not None and ids and max(ids) >= self.vocab_size:
            first = next(i for i, token in enumerate(ids) if token >= self.vocab_size)
            raise UnencodableTextError(
                f"byte 0x{ids[first] - BYTE_OFFSET:02x} at byte offset {first} has no token: "
                f"the model's vocabulary ({self.vocab_size}) is smaller than 256 bytes + "
                f"{BYTE_OFFSET} specials and the checkpoint has no tokenizer.json"
            )
        return [BYTE_BOS_ID, *ids] if add_special_tokens else ids

    def decode(self, token_ids: Sequence[int]) -> str:
        data = bytes(
            token - BYTE_OFFSET for token in token_ids if BYTE_OFFSET <= token < BYTE_OFFSET + 256
        )
        return data.decode("utf-8", errors="replace")


def load_tokenizer(model_dir: str | Path) -> Tokenizer:
    """The tokenizer of the checkpoint in ``model_dir`` (see the module doc)."""
    directory = Path(model_dir)
    tokenizer_config = _read_json(directory / TOKENIZER_CONFIG_FILE_NAME)
    generation_config = _read_json(directory / GENERATION_CONFIG_FILE_NAME)
    model_config = _read_json(directory / MODEL_CONFIG_FILE_NAME)
    jinja_path = directory / CHAT_TEMPLATE_FILE_NAME
    jinja_text = _read_text(jinja_path) if jinja_path.exists() else None
    bos_token = _token_text(tokenizer_config, "bos_token")
    eos_token = _token_text(tokenizer_config, "eos_token")
    try:
        source = template_source(tokenizer_config, jinja_text)
        template = (
            ChatTemplate(source, bos_token=bos_token, eos_token=eos_token)
            if source is not None
            else ChatTemplate.default()
        )
    except ChatTemplateError as exc:
        raise TokenizerError(f"{directory}: {exc}") from exc
    eos_ids = _ids(generation_config, "eos_token_id") + _ids(model_config, "eos_token_id")
    path = directory / TOKENIZER_FILE_NAME
    if not path.exists():
        vocab_size = model_config.get("vocab_size")
        return ByteTokenizer(
            vocab_size=vocab_size if _is_int(vocab_size) else None,
            eos_token_ids=tuple(dict.fromkeys((BYTE_EOS_ID, *eos_ids))),
            chat_template=template,
        )
    backend = _load_backend(path)
    bos_ids = _ids(generation_config, "bos_token_id") + _ids(model_config, "bos_token_id")
    bos_id = backend.token_to_id(bos_token) if bos_token is not None else None
    if bos_id is None and bos_ids:
        bos_id = bos_ids[0]
    if eos_token is not None and (eos_id := backend.token_to_id(eos_token)) is not None:
        eos_ids = [eos_id, *eos_ids]
    return HFTokenizer(
        backend,
        bos_token=bos_token,
        bos_token_id=bos_id,
        eos_token=eos_token,
        eos_token_ids=tuple(dict.fromkeys(eos_ids)),
        add_bos_token=tokenizer_config.get("add_bos_token") is True,
        chat_template=template,
    )


def _load_backend(path: Path) -> RustTokenizer:
    text = _read_text(path, TOKENIZER_FILE_BYTES_MAX)
    try:
        return RustTokenizer.from_str(text)
    except Exception as exc:  # the Rust side raises plain Exception
        raise TokenizerError(f"{path}: not a tokenizers file: {exc}") from exc


def _read_text(path: Path, bytes_max: int = JSON_FILE_BYTES_MAX) -> str:
    try:
        with path.open("rb") as file:
            data = file.read(bytes_max + 1)
    except OSError as exc:
        raise TokenizerError(f"{path}: cannot read: {exc}") from exc
    if len(data) > bytes_max:
        raise TokenizerError(f"{path}: larger than {bytes_max} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TokenizerError(f"{path}: not UTF-8: {exc}") from exc


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object file, or ``{}`` when the file does not exist."""
    if not path.exists():
        return {}
    try:
        raw = json.loads(_read_text(path))
    except ValueError as exc:
        raise TokenizerError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise TokenizerError(f"{path}: top level is not a JSON object")
    return raw


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _ids(config: Mapping[str, Any], key: str) -> list[int]:
    """``config[key]`` as a list of token ids (an int or a list; anything else: none)."""
    value = config.get(key)
    values: list[object] = value if isinstance(value, list) else [value]
    return [item for item in values if isinstance(item, int) and _is_int(item)]


def _token_text(config: Mapping[str, Any], key: str) -> str | None:
    value = config.get(key)
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None
