"""`vramancer-node demo --json`: a real local cluster, a placement committed through
Raft that spans every node, a generation through it, and a clean stop; its greedy
token ids equal the single-process run on the same checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli
from vramancer_node.runtime import SamplingParams, generate, load_stage
from vramancer_node.runtime.randomckpt import DEMO_CONFIG, write_random_checkpoint


def test_demo_json_prints_the_single_process_tokens(state_dir: Path) -> None:
    model = write_random_checkpoint(state_dir / "demo-model")
    result = run_cli(
        "vramancer-node", "demo", "--nodes", "2", "--model", str(model),
        "--prompt-ids", "1,2,3", "--max-tokens", "6", "--json", timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    layers = DEMO_CONFIG["num_hidden_layers"]
    stage = load_stage(model, 0, layers, has_embedding=True, has_head=True)
    expected = generate([stage], [1, 2, 3], SamplingParams(max_new_tokens=6))
    assert len(set(expected)) > 2
    assert document["token_ids"] == expected
    assert document["timings"]["time_to_first_token_s"] > 0
    placement = document["placement"]
    stages = placement["stages"]
    assert len(stages) == 2 and {s["node_id"] for s in stages} == {
        n["node_id"] for n in document["nodes"]
    }
    # Committed through the log (not a node-local placement), and the generation ran
    # under that epoch.
    assert document["placement_epoch"] == placement["epoch"] >= 1
    assert placement["method"] == "explicit" and placement["log_index"] >= 1
    assert placement["schema"] == "vramancer.consensus.placement.v1"
    assert [(s["first_layer"], s["last_layer_exclusive"]) for s in stages] == [
        (0, layers - layers // 2), (layers - layers // 2, layers),
    ]  # fmt: skip
