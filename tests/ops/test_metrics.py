"""Metrics: the histogram, the per-node registry and its collector hook, and the scrape
of a real two-node cluster (API socket and --metrics listener) that promtool accepts."""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.kit import cli_json
from tests.conftest import BIN_DIR, REPO_ROOT, run_cli
from tests.packaging.toolkit import require
from vramancer_node import __version__
from vramancer_node.metrics import COLLECTORS_MAX, NodeMetrics
from vramancer_node.metrics import families as f
from vramancer_node.metrics.histogram import Histogram

UNBOUNDED_LABELS = {"node_id", "address", "peer", "member", "session", "token", "request_id"}


def _promtool() -> str:
    path = BIN_DIR / "promtool"
    found = str(path) if path.exists() else shutil.which("promtool")
    require(
        None if found else "promtool is not installed",
        "run scripts/dev.sh setup (it unpacks Debian's prometheus package into .venv/bin)",
    )
    assert found is not None
    return found


def _promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


# -- histogram and registry -------------------------------------------------------


def test_histogram_counts_cumulatively() -> None:
    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0, math.nan):
        histogram.observe(value)
    assert histogram.cumulative() == [(0.1, 2), (1.0, 3), (math.inf, 4)]
    assert (histogram.count, histogram.sum) == (4, pytest.approx(3.65))
    with pytest.raises(ValueError, match="strictly increasing"):
        Histogram((1.0, 0.5))


def test_registry_per_node_and_the_collector_hook() -> None:
    first, second = NodeMetrics(), NodeMetrics()
    histogram = Histogram()
    histogram.observe(0.003)

    def runtime() -> Iterator:
        yield f.counter("runtime_generated_tokens", "Tokens generated.", 7)
        yield f.histogram_family("runtime_token_duration_seconds", "Per token.", histogram)

    def broken() -> Iterator:
        raise RuntimeError("boom")
        yield  # pragma: no cover

    first.register_collector(runtime)
    first.register_collector(broken, name="broken")
    text = first.render().decode()
    samples = _samples(text)
    assert _value(samples, "vramancer_runtime_generated_tokens_total") == 7
    assert _value(samples, "vramancer_runtime_token_duration_seconds_bucket", le="0.005") == 1
    assert _value(samples, "vramancer_metrics_collector_errors_total", collector="broken") == 1
    assert "runtime" not in second.render().decode()  # registries are not shared
    assert _promtool_check(text).returncode == 0
    for _ in range(COLLECTORS_MAX - 2):
        first.register_collector(runtime)
    with pytest.raises(ValueError, match="collectors"):
        first.register_collector(runtime)


def test_promtool_rejects_a_convention_break() -> None:
    """The promtool gate can fail: a counter without _total is refused."""
    bad = "# HELP vramancer_bad A counter.\n# TYPE vramancer_bad counter\nvramancer_bad 1\n"
    result = _promtool_check(bad)
    assert result.returncode != 0 and "_total" in result.stdout + result.stderr


# -- a real cluster ---------------------------------------------------------------


@pytest.fixture(scope="module")
def scrape(cluster_pair: tuple[Path, Path]) -> str:
    """The founder's /metrics over its API socket, once gossip has flowed."""
    founder, _joiner = cluster_pair
    transport = httpx.HTTPTransport(uds=str(founder / "api.sock"))
    with httpx.Client(transport=transport, base_url="http://node", timeout=30) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


def test_scrape_passes_promtool(scrape: str) -> None:
    result = _promtool_check(scrape)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""  # no lint warning either


def test_scrape_follows_the_naming_conventions(scrape: str) -> None:
    families = list(text_string_to_metric_families(scrape))
    assert len(families) > 30
    for family in families:
        assert family.name.startswith("vramancer_"), family.name
        assert not family.name.endswith(("_ms", "_milliseconds", "_kb", "_mb")), family.name
        for sample in family.samples:
            assert not UNBOUNDED_LABELS & set(sample.labels), (family.name, sample.labels)
            if family.type == "counter":
                assert sample.name.endswith(("_total", "_created")), sample.name


def test_scrape_reflects_the_running_cluster(scrape: str, cluster_pair: tuple[Path, Path]) -> None:
    samples = _samples(scrape)
    build = [k for k in samples if k[0] == "vramancer_build_info"]
    assert build and ("version", __version__) in build[0][1]
    assert _value(samples, "vramancer_node_state", state="running") == 1
    assert _value(samples, "vramancer_membership_members", state="alive") == 2
    assert _value(samples, "vramancer_membership_member_events_total", event="joined") >= 1
    assert _value(samples, "vramancer_handshakes_total", result="ok") >= 1
    assert _value(samples, "vramancer_gossip_sent_bytes_total", transport="udp") > 0
    assert _value(samples, "vramancer_gossip_received_bytes_total", transport="udp") > 0
    assert _value(samples, "vramancer_audit_log_records") >= 2  # founded, admitted
    assert _value(samples, "vramancer_audit_commit_duration_seconds_count") >= 1
    assert _value(samples, "vramancer_audit_verify_failures_total") == 0
    local = cli_json(cluster_pair[0], "peers")["members"][0]
    assert local["local"]
    totals = [v for k, v in samples.items() if k[0] == "vramancer_device_memory_total_bytes"]
    assert sum(totals) == local["memory_total_bytes"]  # what the node gossips about itself
    consensus = cli_json(cluster_pair[0], "status").get("consensus") or {}
    if consensus.get("role") not in (None, "starting"):
        assert _value(samples, "vramancer_consensus_term") >= 1


def test_metrics_listener_serves_plain_http(cluster_pair: tuple[Path, Path]) -> None:
    (address,) = cli_json(cluster_pair[0], "status")["metrics_listening"]
    response = httpx.get(f"{address}/metrics", timeout=30)
    assert response.status_code == 200
    assert "vramancer_membership_members" in response.text
    assert httpx.get(f"{address}/", timeout=30).status_code == 404
    assert _promtool_check(response.text).returncode == 0


def test_every_exported_metric_is_documented(scrape: str) -> None:
    docs = (REPO_ROOT / "docs" / "metrics.md").read_text()
    suffixes = ("_bucket", "_count", "_sum", "_gcount", "_gsum")
    for family in text_string_to_metric_families(scrape):
        for sample in family.samples:
            names = {sample.name} | {sample.name.removesuffix(s) for s in suffixes}
            assert any(f"`{n}`" in docs for n in names), f"docs/metrics.md lacks {sample.name}"


def test_a_taken_metrics_port_is_a_clear_error(state_dir: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_cli(
            "vramancer-node", "join", "--state-dir", str(state_dir / "s"), "--preset", "local",
            "--listen", "127.0.0.1:0", "--metrics", f"127.0.0.1:{port}",
        )  # fmt: skip
    assert result.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr
