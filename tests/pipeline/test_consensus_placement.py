"""Placements committed through Raft (runtime.placement_source = "consensus"): the first
generation has the leader plan and commit a placement, every member then drives under
the same committed epoch, and the tokens equal the single-process run."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.kit import wait_until
from tests.pipeline.kit import (
    CONFIG_TOML,
    Daemon,
    api,
    reference_tokens,
    start_cluster,
    stop_cluster,
)
from tests.runtime.kit import tiny_config, write_checkpoint

PROMPT = [7, 1, 30, 22, 9]


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vrmc-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_generations_use_the_committed_placement_on_every_member(root: Path) -> None:
    model = write_checkpoint(root / "models" / "llama", tiny_config("llama"), seed=4)
    config = CONFIG_TOML + 'placement_source = "consensus"\n'
    daemons: list[Daemon] = start_cluster(root, [[model], [model]], config_toml=config)
    try:
        first, second = daemons

        def both_committed() -> bool:
            views = [api(d.state, "GET", "/v1/status")[1]["consensus"] for d in daemons]
            ids = sorted(d.node_id for d in daemons)
            leaders = {v.get("leader") for v in views}
            one_leader = len(leaders) == 1 and None not in leaders
            return all(sorted(v["members"]) == ids for v in views) and one_leader

        wait_until(both_committed, 60, "both admissions committed, one leader")
        body = {"model": "llama", "prompt_ids": PROMPT, "max_tokens": 8}
        status, events = api(first.state, "POST", "/v1/generate", body)
        assert status == 200, events
        expected = reference_tokens(model, PROMPT, 8)
        assert events[-1]["token_ids"] == expected
        epoch = events[0]["epoch"]
        committed = api(second.state, "GET", "/v1/placement")[1]["placements"]
        assert [p["epoch"] for p in committed] == [epoch]
        status, events = api(second.state, "POST", "/v1/generate", body)
        assert status == 200, events
        assert events[0]["epoch"] == epoch
        assert events[-1]["token_ids"] == expected
        status, refused = api(first.state, "PUT", "/v1/pipeline/placements/llama", {})
        assert (status, refused["code"]) == (409, "placement_source")
    finally:
        stop_cluster(daemons)
