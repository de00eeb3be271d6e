"""The official ``openai`` Python client talks to our API unchanged: its response models
parse our bodies, and our errors become its exceptions."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from tests.serving.kit import write_model
from tests.serving.test_openai_api import make_app

MAX_TOKENS = 8


@pytest.fixture
def api(tmp_path: Path) -> openai.AsyncOpenAI:
    app = make_app(write_model(tmp_path / "tiny", tokenizer="llama3"))
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
    return openai.AsyncOpenAI(
        base_url="http://node/v1", api_key="unused", http_client=http, max_retries=0
    )


async def test_the_openai_client_reads_every_answer(api: openai.AsyncOpenAI) -> None:
    models = await api.models.list()
    assert [model.id for model in models.data] == ["tiny"]
    completion = await api.completions.create(
        model="tiny", prompt="Hello", max_tokens=MAX_TOKENS, temperature=0
    )
    assert completion.object == "text_completion"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == MAX_TOKENS
    chat = await api.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Hello cluster!"}],
        max_tokens=MAX_TOKENS,
        temperature=0,
        seed=3,
    )
    assert chat.choices[0].message.role == "assistant"
    assert chat.choices[0].finish_reason == "length"
    # Streaming through the client is checked against a real daemon
    # (tests/serving/test_daemon_serving.py): its async stream leaks generators under trio.


async def test_the_openai_client_raises_on_our_errors(api: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as not_found:
        await api.completions.create(model="nope", prompt="x")
    assert not_found.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        await api.completions.create(model="tiny", prompt="x", max_tokens=10_000)
    assert bad.value.code == "context_length_exceeded" and bad.value.param == "max_tokens"
