"""Chat templates: a list of messages rendered to the prompt text a model was trained on.

Theory of operation
-------------------
A checkpoint ships its template as Jinja source, in ``chat_template.jinja`` or under
``chat_template`` in ``tokenizer_config.json`` (a string, or a list of named templates
of which ``default`` is used).  Templates come from whoever published the checkpoint,
so they are untrusted code: they are compiled in Jinja's
``ImmutableSandboxedEnvironment`` with the same environment transformers gives them
(``trim_blocks``, ``lstrip_blocks``, the ``loopcontrols`` extension, a ``tojson``
filter that does not HTML-escape, and the globals ``raise_exception`` and
``strftime_now``).  The sandbox refuses attribute access to Python internals and any
mutation of the messages passed in.

Variables a template sees: ``messages`` (each ``{"role", "content"}``, plus ``name``
when the client gave one), ``add_generation_prompt``, ``bos_token``, ``eos_token``,
and ``tools`` (always ``None``: tool calls are not served).

When the checkpoint has no template, :data:`DEFAULT_CHAT_TEMPLATE` is used: each
message as ``<|role|>`` on its own line followed by the content and a newline, then
``<|assistant|>`` and a newline when a reply is asked for.  It writes no special
tokens; the tokenizer adds BOS as it does for a plain prompt.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from vramancer_node.serving.errors import ChatTemplateError

DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
"""The template of checkpoints without one (documented in docs/serving.md)."""

TEMPLATE_CHARS_MAX = 1 << 20
"""Real templates are a few kB; a megabyte is not a template."""
RENDERED_CHARS_MAX = 16 << 20
"""Longest rendered prompt (a bound on what a template loop can produce)."""


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Jinja's own tojson escapes HTML characters, which no model was trained on.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(format_: str) -> str:
    return datetime.now().strftime(format_)


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


class ChatTemplate:
    """A compiled chat template (raises ``ChatTemplateError`` if it does not compile)."""

    def __init__(
        self,
        source: str,
        *,
        bos_token: str | None = None,
        eos_token: str | None = None,
        is_default: bool = False,
    ) -> None:
        if len(source) > TEMPLATE_CHARS_MAX:
            raise ChatTemplateError(f"chat template of {len(source)} chars > {TEMPLATE_CHARS_MAX}")
        try:
            self._template = _environment().from_string(source)
        except jinja2.exceptions.TemplateError as exc:
            raise ChatTemplateError(f"chat template does not compile: {exc}") from exc
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.is_default = is_default
        """True for :data:`DEFAULT_CHAT_TEMPLATE`: it writes no special tokens itself."""

    @classmethod
    def default(cls) -> ChatTemplate:
        return cls(DEFAULT_CHAT_TEMPLATE, is_default=True)

    def render(
        self, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = True
    ) -> str:
        """The prompt text of ``messages`` (ChatTemplateError if the template fails)."""
        plain = [dict(message) for message in messages]  # plain str dicts, nothing else
        try:
            text = self._template.render(
                messages=plain,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token or "",
                eos_token=self.eos_token or "",
                tools=None,
            )
        except jinja2.exceptions.TemplateError as exc:  # SecurityError is one too
            raise ChatTemplateError(f"chat template failed: {exc}") from exc
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            raise ChatTemplateError(f"chat template failed: {type(exc).__name__}: {exc}") from exc
        if len(text) > RENDERED_CHARS_MAX:
            raise ChatTemplateError(f"chat template rendered {len(text)} chars")
        return text


def template_source(config: Mapping[str, Any], jinja_file_text: str | None) -> str | None:
    """The template source of a checkpoint: ``chat_template.jinja`` wins over the
    ``chat_template`` key of tokenizer_config.json (a string, or a list of
    ``{"name", "template"}`` of which ``default`` is taken)."""
    if jinja_file_text is not None:
        return jinja_file_text
    value = config.get("chat_template")
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item.get("name") == "default":
                template = item.get("template")
                if isinstance(template, str):
                    return template
        raise ChatTemplateError("chat_template is a list without a 'default' template")
    raise ChatTemplateError(f"chat_template must be a string or a list, not {type(value).__name__}")
