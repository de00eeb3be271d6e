"""Serving and weight distribution through real daemons on 127.0.0.1.

Two daemons: p1 serves a tiny Llama checkpoint with a Llama 3 tokenizer, p2 has no
model.  The official ``openai`` client streams a chat completion from p1's Unix socket
(the text must be the single-process runtime's greedy tokens, decoded); p2 answers the
same API without models; p2 fetches the checkpoint from p1 over the weights service
and gets byte-identical, verified files.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import run_cli
from tests.pipeline.kit import Daemon, api, reference_tokens, start_cluster, stop_cluster
from tests.serving.kit import write_model
from vramancer_node.serving.tokenizer import load_tokenizer

MODEL = "tiny"
MAX_TOKENS = 10
MESSAGES = [{"role": "user", "content": "Hello cluster!"}]


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Path, list[Daemon]]]:
    root = Path(tempfile.mkdtemp(prefix="vrs-", dir="/tmp"))
    model = write_model(root / MODEL, tokenizer="llama3")
    daemons = start_cluster(root, [[model], []])
    try:
        status, _ = api(
            daemons[0].state,
            "PUT",
            f"/v1/pipeline/placements/{MODEL}",
            {"strategy": "even", "nodes": [daemons[0].node_id]},
        )
        assert status == 200
        yield model, daemons
    finally:
        stop_cluster(daemons)
        shutil.rmtree(root, ignore_errors=True)


def openai_client(daemon: Daemon) -> openai.OpenAI:
    transport = httpx.HTTPTransport(uds=str(daemon.state / "api.sock"))
    http = httpx.Client(transport=transport, timeout=120)
    return openai.OpenAI(base_url="http://node/v1", api_key="unused", http_client=http)


def scrape(daemon: Daemon, name: str, **labels: str) -> float:
    """One sample of the daemon's /metrics."""
    transport = httpx.HTTPTransport(uds=str(daemon.state / "api.sock"))
    with httpx.Client(transport=transport, base_url="http://node", timeout=60) as client:
        text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"no sample {name}{labels} in /metrics")


def test_openai_chat_streams_from_a_real_daemon(cluster: tuple[Path, list[Daemon]]) -> None:
    model, daemons = cluster
    tokenizer = load_tokenizer(model)
    prompt_ids = tokenizer.apply_chat_template(MESSAGES)
    expected = tokenizer.decode(reference_tokens(model, prompt_ids, MAX_TOKENS))
    with openai_client(daemons[0]) as client:
        assert [m.id for m in client.models.list().data] == [MODEL]
        stream = client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,  # type: ignore[arg-type]
            max_tokens=MAX_TOKENS,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        parts, finish, usage = [], None, None
        for chunk in stream:
            if chunk.choices:
                parts.append(chunk.choices[0].delta.content or "")
                finish = chunk.choices[0].finish_reason or finish
            usage = chunk.usage or usage
        # A client that goes away mid-stream ends its generation, not the node.
        abandoned = client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,  # type: ignore[arg-type]
            max_tokens=30,
            stream=True,
        )
        next(iter(abandoned))
        abandoned.close()
        completion = client.completions.create(
            model=MODEL, prompt=prompt_ids, max_tokens=MAX_TOKENS, temperature=0
        )
        with pytest.raises(openai.BadRequestError) as too_long:
            client.completions.create(model=MODEL, prompt=[5] * 100, max_tokens=1)
    assert "".join(parts) == expected
    assert finish == "length"
    assert usage is not None and usage.prompt_tokens == len(prompt_ids)
    assert usage.completion_tokens == MAX_TOKENS
    assert completion.choices[0].text == expected
    assert too_long.value.code == "context_length_exceeded"  # context_tokens = 64


def test_every_node_serves_the_api(cluster: tuple[Path, list[Daemon]]) -> None:
    _, daemons = cluster
    with openai_client(daemons[1]) as client:
        assert client.models.list().data == []
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]


def test_a_node_fetches_the_checkpoint_from_a_member(cluster: tuple[Path, list[Daemon]]) -> None:
    model, daemons = cluster
    p2 = str(daemons[1].state)
    result = run_cli("vramancer", "--state-dir", p2, "weights", "fetch", MODEL, "--json")
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    assert job["state"] == "done" and job["model_info"]["configured"] is False
    fetched = Path(job["model_info"]["directory"])
    assert fetched == daemons[1].state / "models" / MODEL
    originals = sorted(p.name for p in model.iterdir())
    assert sorted(p.name for p in fetched.iterdir()) == originals  # no .part left
    for name in originals:
        original = hashlib.sha256((model / name).read_bytes()).digest()
        assert hashlib.sha256((fetched / name).read_bytes()).digest() == original
    _, served = api(daemons[0].state, "GET", "/v1/weights")
    assert served["served"]["bytes_served"] == sum((model / n).stat().st_size for n in originals)
    assert job["model_info"]["manifest_sha256"] == served["models"][0]["manifest_sha256"]
    total = sum((model / n).stat().st_size for n in originals)
    assert scrape(daemons[0], "vramancer_weights_served_bytes_total") == total
    assert scrape(daemons[1], "vramancer_weights_fetched_bytes_total") == total
    assert scrape(daemons[1], "vramancer_weights_fetch_jobs", state="done") == 1
    listing = run_cli("vramancer", "--state-dir", p2, "weights")
    assert listing.returncode == 0 and MODEL in listing.stdout and "fetched" in listing.stdout
    # Fetching again finds every file in place; the blocking API form says where.
    status, body = api(daemons[1].state, "POST", "/v1/weights/fetch", {"model": MODEL})
    assert status == 200 and body["files"] == originals
    assert body["directory"] == str(fetched)


def test_fetch_errors(cluster: tuple[Path, list[Daemon]]) -> None:
    _, daemons = cluster
    p2 = str(daemons[1].state)
    result = run_cli("vramancer", "--state-dir", p2, "weights", "fetch", "absent")
    assert result.returncode == 1 and "no live member has model 'absent'" in result.stderr
    status, body = api(daemons[1].state, "POST", "/v1/weights/fetch", {"model": "absent"})
    assert status == 404 and body["code"] == "no_source"
    status, body = api(daemons[1].state, "POST", "/v1/weights/fetch", {"model": "../etc"})
    assert status == 400
    status, body = api(daemons[1].state, "POST", "/v1/weights/fetch", {"model": 5})
    assert status == 400
    traversal = {"model": MODEL, "files": ["../p1/node.key"]}
    status, body = api(daemons[1].state, "POST", "/v1/weights/fetch", traversal)
    assert status == 400 and "separator" in body["error"]
