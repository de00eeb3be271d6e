"""The OpenAI-compatible API over a real model (tiny random Llama, real torch), driven
through httpx's ASGI transport: wire shapes field by field, streaming, stop strings,
EOS, usage, and every kind of bad input."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from tests.serving.kit import write_model
from vramancer_node.runtime import SamplingParams, generate, load_stage, read_model_config
from vramancer_node.serving.generator import LocalGenerator
from vramancer_node.serving.openai import openai_routes
from vramancer_node.serving.tokenizer import load_tokenizer

PROMPT = "Hello cluster!"
MAX_TOKENS = 12


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("models")
    write_model(root / "llama3-tiny", tokenizer="llama3")
    write_model(root / "bytes-tiny", tokenizer=None)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def make_app(*dirs: Path) -> Starlette:
    generator = LocalGenerator({d.name: d for d in dirs})
    return Starlette(routes=openai_routes(lambda: generator))


def client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://node")


def reference(directory: Path, prompt_ids: list[int], max_tokens: int) -> list[int]:
    """Greedy tokens of the single-process runtime: what the API must reproduce."""
    config = read_model_config(directory)
    stage = load_stage(directory, 0, config.num_hidden_layers, has_embedding=True, has_head=True)
    return generate([stage], prompt_ids, SamplingParams(max_new_tokens=max_tokens))


def sse_events(text: str) -> list[Any]:
    """The data of each server-sent event; ``[DONE]`` kept as a string."""
    assert text.endswith("data: [DONE]\n\n"), text[-200:]
    events = []
    for block in text.split("\n\n"):
        if not block:
            continue
        assert block.startswith("data: "), block
        data = block[len("data: ") :]
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


def check_usage(usage: dict[str, int], prompt: int, completion: int) -> None:
    assert usage == {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


async def test_models_list_and_get(models_dir: Path) -> None:
    app = make_app(models_dir / "llama3-tiny", models_dir / "bytes-tiny")
    async with client(app) as http:
        reply = await http.get("/v1/models")
        assert reply.status_code == 200
        body = reply.json()
        assert body["object"] == "list"
        assert [model["id"] for model in body["data"]] == ["bytes-tiny", "llama3-tiny"]
        for model in body["data"]:
            assert model["object"] == "model" and model["owned_by"] == "vramancer"
            assert isinstance(model["created"], int) and model["context_length"] == 256
        one = await http.get("/v1/models/llama3-tiny")
        assert one.status_code == 200 and one.json()["id"] == "llama3-tiny"
        missing = await http.get("/v1/models/nope")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "model_not_found"


async def test_completion_matches_the_runtime_field_by_field(models_dir: Path) -> None:
    directory = models_dir / "llama3-tiny"
    tokenizer = load_tokenizer(directory)
    prompt_ids = tokenizer.encode(PROMPT)
    expected_ids = reference(directory, prompt_ids, MAX_TOKENS)
    async with client(make_app(directory)) as http:
        reply = await http.post(
            "/v1/completions",
            json={"model": "llama3-tiny", "prompt": PROMPT, "max_tokens": MAX_TOKENS,
                  "temperature": 0},
        )  # fmt: skip
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert set(body) == {"id", "object", "created", "model", "choices", "usage",
                         "system_fingerprint"}  # fmt: skip
    assert body["id"].startswith("cmpl-") and body["object"] == "text_completion"
    assert body["model"] == "llama3-tiny" and isinstance(body["created"], int)
    [choice] = body["choices"]
    assert choice == {
        "index": 0,
        "text": tokenizer.decode(expected_ids),
        "logprobs": None,
        "finish_reason": "length",
    }
    check_usage(body["usage"], len(prompt_ids), MAX_TOKENS)
    assert len(set(expected_ids)) > 3  # the random model does not repeat one token


async def test_completion_from_token_ids_and_its_stream(models_dir: Path) -> None:
    directory = models_dir / "bytes-tiny"
    tokenizer = load_tokenizer(directory)
    prompt_ids = [5, 17, 42, 99]
    expected = tokenizer.decode(reference(directory, prompt_ids, MAX_TOKENS))
    request = {"model": "bytes-tiny", "prompt": prompt_ids, "max_tokens": MAX_TOKENS,
               "temperature": 0}  # fmt: skip
    async with client(make_app(directory)) as http:
        whole = await http.post("/v1/completions", json=request)
        streamed = await http.post(
            "/v1/completions",
            json={**request, "stream": True, "stream_options": {"include_usage": True}},
        )
    assert whole.json()["choices"][0]["text"] == expected
    assert streamed.status_code == 200
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = sse_events(streamed.text)
    assert events[-1] == "[DONE]"
    chunks, usage_chunk = events[:-2], events[-2]
    assert all(chunk["object"] == "text_completion" for chunk in chunks)
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert "".join(chunk["choices"][0]["text"] for chunk in chunks) == expected
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "length"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert usage_chunk["choices"] == []
    check_usage(usage_chunk["usage"], len(prompt_ids), MAX_TOKENS)


async def test_chat_uses_the_template_stream_and_not(models_dir: Path) -> None:
    directory = models_dir / "llama3-tiny"
    tokenizer = load_tokenizer(directory)
    messages = [{"role": "system", "content": "Be terse."},
                {"role": "user", "content": [{"type": "text", "text": PROMPT}]}]  # fmt: skip
    plain = [messages[0], {"role": "user", "content": PROMPT}]
    prompt_ids = tokenizer.apply_chat_template(plain)
    expected_ids = reference(directory, prompt_ids, MAX_TOKENS)
    request = {"model": "llama3-tiny", "messages": messages, "max_tokens": MAX_TOKENS,
               "temperature": 0.0}  # fmt: skip
    async with client(make_app(directory)) as http:
        whole = await http.post("/v1/chat/completions", json=request)
        streamed = await http.post("/v1/chat/completions", json={**request, "stream": True})
    body = whole.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": tokenizer.decode(expected_ids)},
            "logprobs": None,
            "finish_reason": "length",
        }
    ]
    check_usage(body["usage"], len(prompt_ids), MAX_TOKENS)
    events = sse_events(streamed.text)
    chunks = events[:-1]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)
    assert text == tokenizer.decode(expected_ids)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert "usage" not in chunks[-1]


async def test_stop_string_cuts_the_text(models_dir: Path) -> None:
    directory = models_dir / "bytes-tiny"
    tokenizer = load_tokenizer(directory)
    prompt_ids = [5, 17, 42, 99]
    max_tokens = 40
    full = tokenizer.decode(reference(directory, prompt_ids, max_tokens))
    start = next(i for i in range(3, len(full)) if "\ufffd" not in full[i : i + 2])
    stop = full[start : start + 2]
    cut = full.index(stop)
    request = {"model": "bytes-tiny", "prompt": prompt_ids, "max_tokens": max_tokens,
               "temperature": 0, "stop": ["never-there", stop]}  # fmt: skip
    async with client(make_app(directory)) as http:
        whole = await http.post("/v1/completions", json=request)
        streamed = await http.post("/v1/completions", json={**request, "stream": True})
    choice = whole.json()["choices"][0]
    assert choice["text"] == full[:cut] and choice["finish_reason"] == "stop"
    assert whole.json()["usage"]["completion_tokens"] < max_tokens
    chunks = sse_events(streamed.text)[:-1]
    assert "".join(c["choices"][0]["text"] for c in chunks) == full[:cut]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_eos_token_ends_with_stop(models_dir: Path, tmp_path: Path) -> None:
    directory = shutil.copytree(models_dir / "bytes-tiny", tmp_path / "eos-tiny")
    prompt_ids = [5, 17, 42, 99]
    expected = reference(directory, prompt_ids, MAX_TOKENS)
    index = next(i for i, token in enumerate(expected) if token not in expected[:i] and i >= 2)
    (directory / "generation_config.json").write_text(json.dumps({"eos_token_id": expected[index]}))
    async with client(make_app(directory)) as http:
        reply = await http.post(
            "/v1/completions",
            json={"model": "eos-tiny", "prompt": prompt_ids, "max_tokens": MAX_TOKENS,
                  "temperature": 0},
        )  # fmt: skip
    body = reply.json()
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["choices"][0]["text"] == load_tokenizer(directory).decode(expected[:index])
    assert body["usage"]["completion_tokens"] == index + 1  # the EOS token counts


async def test_sampling_with_a_seed_is_reproducible(models_dir: Path) -> None:
    request = {"model": "bytes-tiny", "prompt": [5, 17], "max_tokens": MAX_TOKENS,
               "temperature": 1.5, "top_k": 50, "top_p": 0.95}  # fmt: skip
    async with client(make_app(models_dir / "bytes-tiny")) as http:
        texts = []
        for seed in (7, 7, 8):
            reply = await http.post("/v1/completions", json={**request, "seed": seed})
            texts.append(reply.json()["choices"][0]["text"])
        greedy = await http.post("/v1/completions", json={**request, "temperature": 0})
    assert texts[0] == texts[1]
    assert len({texts[0], texts[2], greedy.json()["choices"][0]["text"]}) > 1


BAD_REQUESTS: list[tuple[str, object, int, str | None, str | None]] = [
    # path, body, status, param, code
    ("/v1/completions", b"{not json", 400, None, "invalid_json"),
    ("/v1/completions", [1, 2], 400, None, "invalid_body"),
    ("/v1/completions", {"prompt": "x"}, 400, "model", "missing_required_parameter"),
    ("/v1/completions", {"model": 5, "prompt": "x"}, 400, "model", "invalid_type"),
    ("/v1/completions", {"model": "nope", "prompt": "x"}, 404, "model", "model_not_found"),
    ("/v1/completions", {"model": "bytes-tiny"}, 400, "prompt", "missing_required_parameter"),
    ("/v1/completions", {"model": "bytes-tiny", "prompt": 5}, 400, "prompt", "invalid_type"),
    ("/v1/completions", {"model": "bytes-tiny", "prompt": ""}, 400, "prompt", "invalid_value"),
    ("/v1/completions", {"model": "bytes-tiny", "prompt": [1, True]}, 400, "prompt",
     "invalid_type"),
    ("/v1/completions", {"model": "bytes-tiny", "prompt": [1, 4000]}, 400, "prompt",
     "invalid_value"),
    ("/v1/completions", {"model": "bytes-tiny", "prompt": "x", "max_tokens": "10"}, 400,
     "max_tokens", "invalid_type"),
    ("/v1/completions", {"model": "bytes-tiny", "prompt": "x", "max_tokens": 1.5}, 400,
     "max_tokens", "invalid_type"),
    ("/v1/completions", {"model": "bytes-tiny", "prompt": "x", "max_tokens": 0}, 400,
     "max_tokens", "invalid_value"),
    ("/v1/completions", {"model": "bytes-tiny", "prompt": "x", "temperature": "hot"}, 400,
     "temperature", "invalid_type"),
    ("/v1/completions", {"model": "bytes-tiny", "prompt": "x", "temperature": 3}, 400,
     "temperature", "invalid_value"),
    ("/v1/completions", {"model": "bytes-tiny", "prompt": "x", "top_p": 0}, 400, "top_p",
     "invalid_value"),
    ("/v1/completions", {"model": "bytes-tiny", "prompt": "x", "top_k": "5"}, 400, "top_k",
     "invalid_type"),
    ("/v1/completions", {"model": "bytes-tiny", "prompt": "x", "seed": "1"}, 400, "seed",
     "invalid_type"),
    ("/v1/completions", {"model": "bytes-tiny", "prompt": "x", "stream": "yes"}, 400, "stream",
     "invalid_type"),
    ("/v1/completions", {"model": "bytes-tiny", "prompt": "x", "stop": 5}, 400, "stop",
     "invalid_type"),
    ("/v1/completions", {"model": "bytes-tiny", "prompt": "x", "stop": ["a"] * 5}, 400, "stop",
     "invalid_value"),
    ("/v1/completions", {"model": "bytes-tiny", "prompt": "x", "stop": [""]}, 400, "stop",
     "invalid_value"),
    ("/v1/completions", {"model": "bytes-tiny", "prompt": "x", "n": 2}, 400, "n",
     "unsupported_value"),
    ("/v1/completions", {"model": "bytes-tiny", "prompt": "x", "logprobs": 3}, 400, "logprobs",
     "unsupported_value"),
    ("/v1/completions", {"model": "bytes-tiny", "prompt": "x" * 300}, 400, "messages",
     "context_length_exceeded"),
    ("/v1/completions", {"model": "bytes-tiny", "prompt": "x" * 200, "max_tokens": 100}, 400,
     "max_tokens", "context_length_exceeded"),
    ("/v1/completions", {"model": "bytes-tiny", "prompt": "x", "echo": True}, 400, "echo",
     "unsupported_value"),
    ("/v1/completions", {"model": "bytes-tiny", "prompt": "x", "best_of": 3}, 400, "best_of",
     "unsupported_value"),
    ("/v1/chat/completions", {"model": "bytes-tiny", "messages": [{"role": "user",
     "content": "x"}], "tools": [{"type": "function"}]}, 400, "tools", "unsupported_value"),
    ("/v1/chat/completions", {"model": "bytes-tiny", "messages": [{"role": "user",
     "content": "x"}], "response_format": {"type": "json_object"}}, 400, "response_format",
     "unsupported_value"),
    ("/v1/chat/completions", {"model": "bytes-tiny"}, 400, "messages",
     "missing_required_parameter"),
    ("/v1/chat/completions", {"model": "bytes-tiny", "messages": "hi"}, 400, "messages",
     "invalid_type"),
    ("/v1/chat/completions", {"model": "bytes-tiny", "messages": []}, 400, "messages",
     "invalid_type"),
    ("/v1/chat/completions", {"model": "bytes-tiny", "messages": [{"role": "king",
     "content": "x"}]}, 400, "messages[0].role", "invalid_value"),
    ("/v1/chat/completions", {"model": "bytes-tiny", "messages": [{"role": "user",
     "content": 5}]}, 400, "messages[0].content", "invalid_type"),
    ("/v1/chat/completions", {"model": "bytes-tiny", "messages": [{"role": "user",
     "content": [{"type": "image_url"}]}]}, 400, "messages[0].content", "invalid_type"),
    ("/v1/chat/completions", {"model": "nope", "messages": [{"role": "user", "content": "x"}]},
     404, "model", "model_not_found"),
]  # fmt: skip


async def test_bad_requests_get_openai_errors(models_dir: Path) -> None:
    async with client(make_app(models_dir / "bytes-tiny")) as http:
        for path, body, status, param, code in BAD_REQUESTS:
            if isinstance(body, bytes):
                reply = await http.post(path, content=body)
            else:
                reply = await http.post(path, json=body)
            assert reply.status_code == status, (body, reply.text)
            error = reply.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}
            assert error["type"] == "invalid_request_error"
            assert (error["param"], error["code"]) == (param, code), (body, error)
            assert error["message"]
        # ... and the service still works after all of them.
        ok = await http.post("/v1/completions", json={"model": "bytes-tiny", "prompt": "x"})
        assert ok.status_code == 200


async def test_a_broken_checkpoint_is_a_server_error(models_dir: Path, tmp_path: Path) -> None:
    broken = shutil.copytree(models_dir / "bytes-tiny", tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    app = make_app(broken, models_dir / "bytes-tiny")
    async with client(app) as http:
        reply = await http.post("/v1/completions", json={"model": "broken", "prompt": "x"})
        assert reply.status_code == 500
        error = reply.json()["error"]
        assert error["type"] == "server_error" and "broken" in error["message"]
        streamed = await http.post(
            "/v1/completions", json={"model": "broken", "prompt": "x", "stream": True}
        )
        events = sse_events(streamed.text)
        assert events[0]["error"]["type"] == "server_error" and events[1] == "[DONE]"
        ok = await http.post("/v1/completions", json={"model": "bytes-tiny", "prompt": "x"})
        assert ok.status_code == 200
