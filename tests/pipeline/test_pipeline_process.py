"""The pipeline across real daemons on 127.0.0.1: greedy tokens from 1, 2 and 3 daemons
equal the single-process run; a long prompt, a stale epoch and a wrong-shape activation
are clear errors, and the node that refused keeps serving.

One three-daemon cluster serves the whole module.  Every node serves ``llama`` (4
layers, GQA) and ``qwen2`` (bias + GQA); the ``mixed`` model is a 32-wide checkpoint on
p1 and p2 but a 48-wide one on p3, so p1 -> p3 sends hidden states of the wrong width;
p2's copy of ``holey`` lacks a tensor of layer 3; p1's ``gpt`` is an architecture the
runtime does not support; only p1 holds ``sharded`` (three shards) and ``single``, the
others fetch what their stages need from it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from safetensors.torch import load_file, save_file

from tests.conftest import run_cli
from tests.pipeline.kit import (
    CONTEXT_TOKENS,
    Daemon,
    api,
    reference_tokens,
    stages_json,
    start_cluster,
    stop_cluster,
)
from tests.runtime.kit import tiny_config, write_checkpoint
from vramancer_node.runtime import SamplingParams, load_stage
from vramancer_node.runtime import generate as generate_locally
from vramancer_node.serving.tokenizer import load_tokenizer

PROMPT = [5, 17, 3, 88, 41, 9, 60, 2, 33, 71]
MAX_NEW_TOKENS = 12


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vrmp-", dir="/tmp"))
    try:
        write_checkpoint(path / "models" / "llama", tiny_config("llama"), seed=1)
        write_checkpoint(path / "models" / "qwen2", tiny_config("qwen2"), seed=2)
        write_checkpoint(path / "models" / "mixed", tiny_config("llama"), seed=3)
        wide = tiny_config("llama", hidden_size=48)
        write_checkpoint(path / "wide" / "mixed", wide, seed=3)
        write_checkpoint(path / "models" / "holey", tiny_config("llama"), seed=5)
        holey = write_checkpoint(path / "short" / "holey", tiny_config("llama"), seed=5)
        tensors = load_file(holey / "model.safetensors")
        del tensors["model.layers.3.mlp.down_proj.weight"]
        save_file(tensors, str(holey / "model.safetensors"))
        write_checkpoint(path / "models" / "gpt", tiny_config("gpt2"), seed=6)
        write_checkpoint(path / "models" / "sharded", tiny_config("llama"), seed=7, shards=3)
        write_checkpoint(path / "models" / "single", tiny_config("qwen2"), seed=8)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(root: Path) -> Iterator[list[Daemon]]:
    models = root / "models"
    common = [models / "llama", models / "qwen2"]
    daemons = start_cluster(
        root,
        [
            [
                *common,
                models / "mixed",
                models / "holey",
                models / "gpt",
                models / "sharded",
                models / "single",
            ],
            [*common, models / "mixed", root / "short" / "holey"],
            [*common, root / "wide" / "mixed"],
        ],
    )
    try:
        yield daemons
    finally:
        stop_cluster(daemons)


def put_placement(driver: Daemon, model: str, body: dict[str, object]) -> dict[str, object]:
    status, placement = api(driver.state, "PUT", f"/v1/pipeline/placements/{model}", body)
    assert status == 200, placement
    return placement


def metrics_text(daemon: Daemon) -> str:
    transport = httpx.HTTPTransport(uds=str(daemon.state / "api.sock"))
    with httpx.Client(transport=transport, base_url="http://node", timeout=30) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    return response.text


def generate(driver: Daemon, model: str, prompt: list[int]) -> tuple[int, object]:
    body = {"model": model, "prompt_ids": prompt, "max_tokens": MAX_NEW_TOKENS}
    return api(driver.state, "POST", "/v1/generate", body)


@pytest.mark.parametrize(
    ("model", "layout"),
    [
        ("llama", [(0, 0, 4)]),
        ("llama", [(1, 0, 3), (2, 3, 4)]),
        ("llama", [(0, 0, 2), (1, 2, 3), (2, 3, 4)]),
        ("qwen2", [(2, 0, 1), (0, 1, 3), (1, 3, 4)]),
    ],
    ids=["llama-1-node", "llama-2-nodes-driver-hosts-none", "llama-3-nodes", "qwen2-3-nodes"],
)
def test_greedy_tokens_equal_the_single_process_run(
    cluster: list[Daemon], root: Path, model: str, layout: list[tuple[int, int, int]]
) -> None:
    driver = cluster[0]
    spans = [(cluster[i], first, last) for i, first, last in layout]
    placement = put_placement(driver, model, stages_json(*spans))
    status, events = generate(driver, model, PROMPT)
    assert status == 200, events
    assert isinstance(events, list)
    start, tokens, done = events[0], events[1:-1], events[-1]
    assert start["event"] == "start" and start["epoch"] == placement["epoch"]
    assert start["stages"] == [d.node_id for d, _, _ in spans]
    assert done["event"] == "done", done
    expected = reference_tokens(root / "models" / model, PROMPT, MAX_NEW_TOKENS)
    assert len(set(expected)) > 3, "the reference must vary, or the comparison proves little"
    assert done["token_ids"] == [t["token_id"] for t in tokens] == expected
    assert all(len(t["stage_times_s"]) == len(layout) for t in tokens)


def test_vramancer_generate_json_streams_the_same_tokens(cluster: list[Daemon], root: Path) -> None:
    driver = cluster[0]
    put_placement(driver, "llama", {"strategy": "even", "nodes": [d.node_id for d in cluster]})
    result = run_cli(
        "vramancer", "--state-dir", str(driver.state), "generate", "--model", "llama",
        "--prompt-ids", ",".join(map(str, PROMPT)), "--max-tokens", str(MAX_NEW_TOKENS),
        "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["schema"] == "vramancer.generate.v1"
    assert document["token_ids"] == reference_tokens(root / "models" / "llama", PROMPT, 12)
    assert len(document["timings"]["stage_times_s_total"]) == 3
    assert document["finish_reason"] == "length"
    piped = run_cli(
        "vramancer", "--state-dir", str(driver.state), "generate", "--model", "llama",
        "--prompt-ids", ",".join(map(str, PROMPT)), "--max-tokens", str(MAX_NEW_TOKENS),
    )  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.split() == [str(t) for t in document["token_ids"]]
    assert "tok/s" in piped.stderr and "stage compute s" in piped.stderr
    metrics = metrics_text(driver)
    assert "vramancer_runtime_generated_tokens_total" in metrics
    assert 'vramancer_runtime_stage_duration_seconds_count{stage="2"}' in metrics
    assert "vramancer_pipeline_sessions_opened_total" in metrics


def test_a_prompt_longer_than_the_reserved_context_is_a_clear_error(
    cluster: list[Daemon],
) -> None:
    status, body = generate(cluster[0], "llama", [1] * (CONTEXT_TOKENS + 1))
    assert status == 400
    assert body["code"] == "context_exceeded"
    assert f"{CONTEXT_TOKENS + 1} tokens" in body["error"]
    assert f"reserves {CONTEXT_TOKENS}" in body["error"]
    result = run_cli(
        "vramancer", "--state-dir", str(cluster[0].state), "generate", "--model", "llama",
        "--prompt-ids", ",".join(["1"] * (CONTEXT_TOKENS + 1)),
    )  # fmt: skip
    assert result.returncode == 1
    assert "reserves 64 tokens of context" in result.stderr


def test_a_stale_epoch_is_refused_with_a_specific_error(cluster: list[Daemon]) -> None:
    p1, p2, p3 = cluster
    spans = stages_json((p1, 0, 2), (p2, 2, 3), (p3, 3, 4))
    put_placement(p1, "llama", {**spans, "epoch": 100})
    assert generate(p1, "llama", PROMPT)[0] == 200  # every stage now runs epoch 100
    put_placement(p2, "llama", {**spans, "epoch": 99})
    status, body = generate(p2, "llama", PROMPT)
    assert status == 409, body
    assert body["code"] == "stale_epoch"
    assert "runs placement epoch 100, the request epoch 99" in body["error"]
    put_placement(p2, "llama", {**spans, "epoch": 101})
    assert generate(p2, "llama", PROMPT)[0] == 200  # a newer epoch is taken up


def test_a_wrong_shape_activation_is_refused_and_the_node_keeps_serving(
    cluster: list[Daemon], root: Path
) -> None:
    p1, _p2, p3 = cluster
    put_placement(p1, "mixed", stages_json((p1, 0, 2), (p3, 2, 4)))
    status, body = generate(p1, "mixed", PROMPT)
    assert status == 502, body
    assert body["code"] == "bad_activation"
    assert "expects [1, 4, 48]" in body["error"], body["error"]
    assert "f32 [1, 4, 32]" in body["error"]
    assert f"node {p3.node_id}" in body["error"]
    refusals = api(p3.state, "GET", "/v1/pipeline")[1]["host"]["refusals"]
    assert refusals.get("bad_activation", 0) >= 1
    put_placement(p1, "llama", stages_json((p3, 0, 3), (p1, 3, 4)))
    status, events = generate(p1, "llama", PROMPT)
    assert status == 200, events
    expected = reference_tokens(root / "models" / "llama", PROMPT, MAX_NEW_TOKENS)
    assert events[-1]["token_ids"] == expected


def test_unknown_model_and_bad_prompt_are_clear_errors(cluster: list[Daemon]) -> None:
    status, body = generate(cluster[0], "nope", PROMPT)
    assert (status, body["code"]) == (404, "unknown_model")
    assert "llama" in body["error"]
    status, body = generate(cluster[0], "llama", [1, 2, 96])
    assert status == 400 and "outside [0, 96)" in body["error"]
    status, body = api(cluster[0].state, "POST", "/v1/generate", {"model": "llama"})
    assert status == 400 and "empty" in body["error"]


def test_a_text_prompt_is_tokenized_by_the_node(cluster: list[Daemon], root: Path) -> None:
    driver = cluster[0]
    put_placement(driver, "llama", {"strategy": "even", "nodes": [d.node_id for d in cluster]})
    body = {"model": "llama", "prompt": "HELLO 42", "max_tokens": 6, "stop_token_ids": []}
    status, events = api(driver.state, "POST", "/v1/generate", body)
    assert status == 200, events
    ids = load_tokenizer(root / "models" / "llama").encode("HELLO 42")
    assert events[0]["prompt_tokens"] == len(ids)
    assert events[-1]["token_ids"] == reference_tokens(root / "models" / "llama", ids, 6)
    assert isinstance(events[-1]["text"], str)
    body["prompt"] = "lowercase bytes are outside a 96-token vocabulary"
    status, error = api(driver.state, "POST", "/v1/generate", body)
    assert status == 400 and "cannot tokenize the prompt" in error["error"]


def test_a_broken_checkpoint_is_a_clear_error_and_the_node_keeps_serving(
    cluster: list[Daemon], root: Path
) -> None:
    p1, p2, _p3 = cluster
    put_placement(p1, "holey", stages_json((p1, 0, 2), (p2, 2, 4)))
    status, body = generate(p1, "holey", PROMPT)
    assert (status, body["code"]) == (502, "load_failed"), body
    assert "model.layers.3.mlp.down_proj.weight" in body["error"]
    assert f"node {p2.node_id}" in body["error"]
    put_placement(p1, "llama", stages_json((p2, 0, 4)))
    status, events = generate(p1, "llama", PROMPT)
    assert status == 200, events
    status, body = generate(p1, "gpt", PROMPT)
    assert status == 500 and "gpt2" in body["error"], body


def test_seeded_sampling_across_daemons_equals_the_single_process_run(
    cluster: list[Daemon], root: Path
) -> None:
    driver = cluster[0]
    put_placement(driver, "qwen2", {"strategy": "even", "nodes": [d.node_id for d in cluster]})
    knobs = {"temperature": 0.9, "top_k": 20, "top_p": 0.95, "seed": 7}
    body = {"model": "qwen2", "prompt_ids": PROMPT, "max_tokens": MAX_NEW_TOKENS, **knobs}
    status, events = api(driver.state, "POST", "/v1/generate", body)
    assert status == 200, events
    stage = load_stage(root / "models" / "qwen2", 0, 4, has_embedding=True, has_head=True)
    params = SamplingParams(max_new_tokens=MAX_NEW_TOKENS, **knobs)  # type: ignore[arg-type]
    expected = generate_locally([stage], PROMPT, params, prefill_chunk_tokens=4)
    assert events[-1]["token_ids"] == expected
    greedy = reference_tokens(root / "models" / "qwen2", PROMPT, MAX_NEW_TOKENS)
    assert expected != greedy, "sampling must differ from greedy, or this proves nothing"


def test_a_stage_node_without_the_model_fetches_only_its_files(
    cluster: list[Daemon], root: Path
) -> None:
    p1, _p2, p3 = cluster
    put_placement(p1, "sharded", stages_json((p1, 0, 1), (p3, 1, 4)))
    status, events = generate(p1, "sharded", PROMPT)
    assert status == 200, events
    assert events[-1]["token_ids"] == reference_tokens(root / "models" / "sharded", PROMPT, 12)
    fetched = p3.state / "models" / "sharded"
    assert (fetched / "config.json").is_file()
    assert (fetched / "model.safetensors.index.json").is_file()
    shards = sorted(p.name for p in fetched.glob("model-*.safetensors"))
    assert shards, "p3 fetched no shard"


def test_a_driver_without_the_model_fetches_its_config_and_generates(
    cluster: list[Daemon], root: Path
) -> None:
    _p1, p2, _p3 = cluster
    status, events = generate(p2, "single", PROMPT)
    assert status == 200, events
    assert events[-1]["token_ids"] == reference_tokens(root / "models" / "single", PROMPT, 12)
    assert (p2.state / "models" / "single" / "config.json").is_file()
    status, body = generate(p2, "nowhere", PROMPT)
    assert (status, body["code"]) == (404, "unknown_model")
    assert "from members" in body["error"]
