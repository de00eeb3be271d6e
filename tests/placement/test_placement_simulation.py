"""simulations/placement.py: the baselines reproduce their source; ours never loses.

The baseline tests are hand-checked examples of the rules quoted in
``simulations/placement_baselines.py`` (exo's ring memory-weighted partitioning and
``map_partitions_to_shards``, llama.cpp's default ``--tensor-split``).  The run test
replays a small seeded instance set and asserts what must hold on every instance, not
the figures: our placement fits wherever any baseline fits, it is never slower than a
baseline that fits (every instance here is within the exact search), and never more
than 1 % slower than brute force.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from random import Random
from typing import Any

import pytest

from protocol.placement import DeviceResources, Links, ModelProfile, NodeResources, PlacementRequest
from simulations.placement_baselines import (
    even_split,
    exo_allocate_layers,
    exo_split,
    exo_v1_split,
    llamacpp_layer_devices,
    llamacpp_split,
)
from simulations.placement_brute import brute_force, work
from simulations.placement_catalogue import MODELS, PARAMETERS
from simulations.placement_cluster import draw_cluster, request_for
from simulations.placement_costing import evaluate, ours, problem_of, split_fits

REPO_ROOT = Path(__file__).resolve().parents[2]
SIMULATION = REPO_ROOT / "simulations" / "placement.py"
SIM_TIMEOUT_S = 120
SEED = 20261121
GIB = 2**30
MIB = 2**20
GAP_MAX = 0.01
TIE_TOLERANCE = 1e-9
BASELINES = ("exo", "exo_v1", "llamacpp", "even")


# --- the baselines, by hand -----------------------------------------------------------


def test_exo_sorts_by_total_memory_and_floors_the_fractions() -> None:
    # 24 + 12 + 8 GiB = 45056 MiB: ends round(24576/45056, 5) = 0.54545, 0.81818, 1.0;
    # layers int(0.54545 * 32) = 17 -> 0..16, int(0.81818 * 32) = 26 -> 17..25, 26..31.
    total = {"c": 8 * GIB, "a": 24 * GIB, "b": 12 * GIB}
    assert exo_split(total, 32) == (("a", 17), ("b", 9), ("c", 6))


def test_exo_breaks_memory_ties_by_descending_node_id() -> None:
    assert exo_split({"n1": 8 * GIB, "n2": 8 * GIB}, 4) == (("n2", 2), ("n1", 2))


def test_exo_skips_an_empty_shard() -> None:
    # ends 0.98522, 0.99507, 1.0 of 4 layers: b's shard is int(3.94)..int(3.98) - 1, empty.
    assert exo_split({"a": 1000 * MIB, "b": 10 * MIB, "c": 5 * MIB}, 4) == (("a", 3), ("c", 1))


def test_exo_v1_takes_the_fewest_nodes_then_the_most_available_memory() -> None:
    available = {"a": 20 * GIB, "b": 10 * GIB, "c": 30 * GIB}
    assert exo_v1_split(available, 25 * GIB, 10) == (("c", 10),)
    # No single node holds 35 GiB; of the pairs that do, a + c has the most memory:
    # fractions 0.4 / 0.6 of 10 layers.
    assert exo_v1_split(available, 35 * GIB, 10) == (("a", 4), ("c", 6))
    assert exo_v1_split(available, 61 * GIB, 10) is None


def test_exo_v1_allocates_by_largest_remainder_and_one_layer_at_least() -> None:
    # 10/3 each: floors 3, 3, 3; the one spare layer goes to the first (stable sort).
    assert exo_allocate_layers([1 / 3, 1 / 3, 1 / 3], 10) == [4, 3, 3]
    # 0.02 * 10 floors to 0 and takes a layer from the largest.
    assert exo_allocate_layers([0.98, 0.02], 10) == [9, 1]


def test_llamacpp_puts_rpc_servers_first_and_splits_by_free_memory() -> None:
    # Host a (most free) last; b, c by node id.  Cumulative 10/36, 16/36, 1 of 33
    # "layers" (32 + output): il < 9.17 -> b, il < 14.67 -> c, the rest and output -> a.
    split, output_alone = llamacpp_split({"a": 20 * GIB, "b": 10 * GIB, "c": 6 * GIB}, 32)
    assert split == (("b", 10), ("c", 5), ("a", 17))
    assert not output_alone


def test_llamacpp_upper_bound_sends_a_boundary_layer_to_the_next_device() -> None:
    # splits [0.5, 1.0] over 4: layer 2 sits exactly on 0.5, upper_bound moves it on.
    assert llamacpp_layer_devices([5, 5], 3) == [0, 0, 1, 1]
    assert llamacpp_split({"a": 5, "b": 5}, 3) == ((("b", 2), ("a", 1)), False)


def test_llamacpp_output_alone_on_the_host_is_folded() -> None:
    # 2 layers + output over [0.5, 1.0]: 0, 1/3 -> b; output 2/3 -> host a, no layer.
    assert llamacpp_split({"a": 5, "b": 5}, 2) == ((("b", 2),), True)


def test_even_split_in_node_id_order() -> None:
    assert even_split(["n2", "n0", "n1"], 8) == (("n0", 3), ("n1", 3), ("n2", 2))


# --- the yardstick --------------------------------------------------------------------


def test_model_configs_give_the_published_parameter_counts() -> None:
    for name, config in MODELS.items():
        profile = ModelProfile.from_hf_config(config, "auto")
        assert profile.parameter_count == PARAMETERS[name], name
        assert profile.dtype == "bfloat16"


def _two_nodes(free_a: int, free_b: int) -> PlacementRequest:
    model = ModelProfile.from_hf_config(MODELS["Llama-3.1-8B"], "auto")
    nodes = (
        NodeResources(node_id="a", devices=(DeviceResources(0, "cuda", free_a, 1.0),)),
        NodeResources(node_id="b", devices=(DeviceResources(0, "cuda", free_b, 0.5),)),
    )
    links = Links.symmetric({("a", "b"): 0.25e-3}, {("a", "b"): 117.5e6})
    return PlacementRequest(
        profile=model, nodes=nodes, links=links, context_tokens=4096, compute_efficiency=1.0
    )


def test_a_busy_device_makes_exo_infeasible_where_ours_fits() -> None:
    # Both 24 GiB cards, but a holds only 6 GiB free: exo weighs by total memory and
    # gives a 16 layers (> 6 GiB), ours puts the model where it fits.
    request = _two_nodes(6 * GIB, 23 * GIB)
    problem = problem_of(request)
    exo = evaluate(request, problem, exo_split({"a": 24 * GIB, "b": 24 * GIB}, 32))
    assert exo.split == (("b", 16), ("a", 16))
    assert not exo.feasible and exo.decode_s is None
    mine = ours(request, problem)
    assert mine.feasible and mine.split is not None
    assert split_fits(request, mine.split)


def test_brute_force_agrees_with_ours_on_a_hand_sized_instance() -> None:
    # 8B bf16 is ~16 GiB: neither 10 GiB card holds it, so the split is forced.
    request = _two_nodes(10 * GIB, 10 * GIB)
    problem = problem_of(request)
    found = brute_force(request)
    assert found is not None
    split, brute_s = found
    assert len(split) == 2 and sum(n for _, n in split) == 32
    mine = ours(request, problem)
    assert mine.decode_s == pytest.approx(brute_s, rel=TIE_TOLERANCE)
    assert work(2, 32) == 2 + 2 * 31


def test_roofline_throughput_is_memory_bound() -> None:
    model = ModelProfile.from_hf_config(MODELS["Llama-3.1-8B"], "auto")
    cluster = draw_cluster(Random(SEED), 4)
    request = request_for(cluster, model, context_tokens=4096)
    for node, resources in zip(cluster.nodes, request.nodes, strict=True):
        tflops = resources.devices[0].tflops
        assert 0 < tflops < node.profile.peak_tflops
        # seconds per layer = bytes read / (bandwidth x 0.7)
        layer_s = model.layer_flops_per_token(4096) / (tflops * 1e12)
        expected = model.layer_bytes(4096) / (node.profile.memory_bandwidth_bytes_per_s * 0.7)
        assert layer_s == pytest.approx(expected, rel=1e-9)


# --- a seeded run ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    png = tmp_path_factory.mktemp("plot") / "placement.png"
    args = ["--seed", str(SEED), "--nodes", "2,3,4,5", "--clusters", "3", "--json"]
    args += ["--models", "Llama-3.2-1B,Llama-3.2-3B,Llama-3.1-8B,Qwen2.5-14B"]
    args += ["--plot", str(png)]
    done = subprocess.run(
        [sys.executable, str(SIMULATION), *args],
        capture_output=True,
        text=True,
        timeout=SIM_TIMEOUT_S,
        check=False,
    )
    return done, png


def _document(run: tuple[subprocess.CompletedProcess[str], Path]) -> dict[str, Any]:
    done, _ = run
    print(f"reproduce with --seed {SEED}\n{done.stderr}")
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def test_prints_seed_parameters_and_summary(
    run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    document = _document(run)
    assert run[0].stderr.splitlines()[0] == f"placement simulation seed={SEED}"
    assert document["seed"] == SEED
    assert document["parameters"]["nodes"] == [2, 3, 4, 5]
    summary = document["summary"]
    assert summary["instances"] == len(document["instances"]) == 4 * 3 * 4
    for key in (
        "median_speedup_vs_exo",
        "median_speedup_vs_exo_v1",
        "median_speedup_vs_llamacpp",
        "max_gap_to_optimal",
        "infeasible_where_baseline_feasible",
    ):
        assert key in summary


def test_ours_fits_wherever_a_baseline_fits(
    run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    document = _document(run)
    assert document["summary"]["infeasible_where_baseline_feasible"] == 0
    for row in document["instances"]:
        speeds = row["tokens_per_s"]
        if any(speeds[m] is not None for m in (*BASELINES, "brute_force")):
            assert speeds["ours"] is not None, row


def test_ours_is_never_slower_than_a_baseline_or_brute_force(
    run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    document = _document(run)
    summary = document["summary"]
    assert summary["brute_forced_instances"] > 0
    assert summary["max_gap_to_optimal"] <= GAP_MAX
    for row in document["instances"]:
        speeds = row["tokens_per_s"]
        if speeds["ours"] is None:
            continue
        for method in BASELINES:
            if speeds[method] is not None:
                assert speeds["ours"] >= speeds[method] * (1 - 1e-3), (method, row)
        if speeds["brute_force"] is not None:
            assert speeds["ours"] >= speeds["brute_force"] * (1 - GAP_MAX), row


def test_writes_the_plot(run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _document(run)
    assert run[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_same_instances(run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    first = _document(run)
    args = ["--seed", str(SEED), "--nodes", "3", "--clusters", "3", "--json", "--no-plot"]
    args += ["--models", "Llama-3.2-1B,Llama-3.2-3B,Llama-3.1-8B,Qwen2.5-14B"]
    again = subprocess.run(
        [sys.executable, str(SIMULATION), *args],
        capture_output=True,
        text=True,
        timeout=SIM_TIMEOUT_S,
        check=True,
    )
    second = json.loads(again.stdout)
    assert [row for row in first["instances"] if row["nodes"] == 3] == second["instances"]
