"""Pipeline benchmark: decode tokens/s and time to first token, one process vs 2 and 3
daemons, and the latency one activation hop adds.

Usage::

    python benchmarks/pipeline.py              # 16 layers, hidden 1024, fp32, CPU
    python benchmarks/pipeline.py --quick      # 8 layers, hidden 512, fewer tokens
    python benchmarks/pipeline.py --threads 2 --tokens 64

Prints one JSON document on stdout (progress on stderr).  Nothing asserts on timing:
``met`` compares the figures with the issue's targets, and the exit status is 0.

Theory of operation
-------------------
1. A random Llama checkpoint (``--layers``, ``--hidden``, fp32; weights from
   :mod:`vramancer_node.runtime.randomckpt`) is written to a temporary directory.
2. *Single process*: the whole model as one stage in this process with ``--threads``
   torch threads; time to first token (prefill of ``--prompt-tokens`` + one sample)
   and decode tokens/s (``(n - 1) / (t_n - t_1)``), after a warm-up, median of
   ``--repeats`` runs.
3. *N daemons* (2 and 3): ``vramancer-node demo``'s local cluster (real daemons on
   127.0.0.1, each with ``--threads`` torch threads), the layers split evenly, one
   warm-up generation (loads the stages), then ``--repeats`` generations through
   ``POST /v1/generate`` on the first node; the node's own timings (time to first
   token, decode tokens/s) are reported, median of the runs.  Each decode step's
   *overhead* is its wall time at the driver minus the stages' compute time: the cost
   of the hops, codecs, encryption and thread hand-offs.
4. *Hop*: a ``[1, 1, 4096]`` fp16 activation (8 KiB) through a real ``SecureStream``
   over TCP on 127.0.0.1 (Noise keys from a real XX handshake), both ends in this
   process: encode the header, send the BULK frame, receive, decode and check the
   header, view the body as a tensor; echoed back the same way.  One hop is half a
   round trip; p50 and p99 over ``--hops`` round trips.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import trio

from cli.apiclient import api_get, api_request
from cli.demo import local_cluster
from cli.generate import stream_generation
from crypto.noise import HandshakeState, KeyPair
from protocol.frames import BulkFrame
from protocol.pipeline import (
    BULK_KIND_ACTIVATION,
    ActivationHeader,
    MessageKind,
    decode_header,
    encode_header,
)
from vramancer_node.net.securestream import SecureStream
from vramancer_node.pipeline.tensors import body_tensor, tensor_body
from vramancer_node.runtime import SamplingParams, generate, load_stage
from vramancer_node.runtime.randomckpt import DEMO_CONFIG, write_random_checkpoint

TARGET_DECODE_RATIO_MIN = 0.85
TARGET_HOP_P50_MS_MAX = 0.5
TARGET_HOP_P99_MS_MAX = 2.0
HOP_WIDTH = 4096
QUICK = {"layers": 8, "hidden": 512, "tokens": 16, "hops": 500, "repeats": 1}


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def model_config(layers: int, hidden: int) -> dict[str, Any]:
    heads = max(1, hidden // 64)
    return {
        **DEMO_CONFIG,
        "vocab_size": 32000,
        "hidden_size": hidden,
        "intermediate_size": hidden * 11 // 4,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "max_position_embeddings": 2048,
    }


def single_process(model: Path, layers: int, prompt: list[int], tokens: int) -> dict[str, Any]:
    stage = load_stage(model, 0, layers, has_embedding=True, has_head=True)

    def timed(count: int) -> float:
        started = time.perf_counter()
        generate([stage], prompt, SamplingParams(max_new_tokens=count))
        return time.perf_counter() - started

    timed(2)  # warm-up
    first = [timed(1) for _ in range(3)]
    whole = [timed(tokens) for _ in range(ARGS.repeats)]
    ttft_s = statistics.median(first)
    return {
        "time_to_first_token_s": ttft_s,
        "decode_tokens_per_s": (tokens - 1) / (statistics.median(whole) - ttft_s),
    }


def daemons(root: Path, model: Path, count: int, prompt: list[int], tokens: int) -> dict[str, Any]:
    config = root / f"node-{count}.toml"
    config.write_text(f"[runtime]\nthreads = {ARGS.threads}\n")
    with local_cluster(root / f"c{count}", count, model, config, lambda text: None) as states:
        driver = states[0]
        node_ids = [api_get(state, "/v1/status")["node_id"] for state in states]
        api_request(
            driver, "PUT", f"/v1/pipeline/placements/{model.name}",
            {"strategy": "even", "nodes": node_ids},
        )  # fmt: skip
        body = {"model": model.name, "prompt_ids": prompt, "max_tokens": 2}
        for _ in stream_generation(driver, body):  # loads every stage
            pass
        runs, overhead_ms = [], []
        for _ in range(ARGS.repeats):
            body = {"model": model.name, "prompt_ids": prompt, "max_tokens": tokens}
            for event in stream_generation(driver, body):
                if event["event"] == "token" and event["index"] > 0:
                    compute_s = sum(event["stage_times_s"])
                    overhead_ms.append(1000 * (event["step_s"] - compute_s))
                elif event["event"] == "done":
                    runs.append(event["timings"])
    return {
        "time_to_first_token_s": statistics.median(r["time_to_first_token_s"] for r in runs),
        "decode_tokens_per_s": statistics.median(r["decode_tokens_per_s"] for r in runs),
        "step_overhead_ms_p50": percentile(overhead_ms, 50),
        "step_overhead_ms_p99": percentile(overhead_ms, 99),
        "stage_compute_s_total": runs[-1]["stage_times_s_total"],
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def cipher_pairs() -> tuple[Any, Any]:
    prologue = b"vramancer/noise/1"
    a = HandshakeState.initialize(
        pattern="XX", initiator=True, prologue=prologue, s=KeyPair.generate()
    )
    b = HandshakeState.initialize(
        pattern="XX", initiator=False, prologue=prologue, s=KeyPair.generate()
    )
    b.read_message(a.write_message(b""))
    a.read_message(b.write_message(b""))
    b.read_message(a.write_message(b""))
    return a.split(), b.split()


async def hop_latency(round_trips: int) -> dict[str, Any]:
    (a_send, a_recv), (b_send, b_recv) = cipher_pairs()
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    activation = torch.randn(1, 1, HOP_WIDTH).to(torch.float16)
    header = ActivationHeader(
        kind=MessageKind.DECODE, epoch=1, session_id=bytes(16), step=0,
        first_position=0, dtype="f16", shape=(1, 1, HOP_WIDTH),
    )  # fmt: skip

    async def one_hop(stream: SecureStream, tensor: torch.Tensor) -> torch.Tensor:
        await stream.send_bulk(BULK_KIND_ACTIVATION, encode_header(header), tensor_body(tensor))
        return tensor

    async def receive(stream: SecureStream) -> torch.Tensor:
        frame = await stream.receive_frame()
        assert isinstance(frame, BulkFrame)
        return body_tensor(decode_header(frame.header), frame.body)

    samples_ms: list[float] = []
    async with trio.open_nursery() as nursery:

        async def echo() -> None:
            raw = await listeners[0].accept()
            stream = SecureStream(raw, b_send, b_recv)
            for _ in range(round_trips + 10):
                await one_hop(stream, await receive(stream))

        nursery.start_soon(echo)
        raw = await trio.open_tcp_stream("127.0.0.1", port)
        stream = SecureStream(raw, a_send, a_recv)
        for index in range(round_trips + 10):
            started = time.perf_counter()
            await one_hop(stream, activation)
            await receive(stream)
            if index >= 10:  # warm-up
                samples_ms.append(1000 * (time.perf_counter() - started) / 2)
        nursery.cancel_scope.cancel()
    return {
        "activation": f"f16 [1, 1, {HOP_WIDTH}] ({HOP_WIDTH * 2} bytes)",
        "round_trips": round_trips,
        "hop_ms_p50": percentile(samples_ms, 50),
        "hop_ms_p99": percentile(samples_ms, 99),
    }


def main() -> None:
    torch.set_num_threads(ARGS.threads)
    prompt = [(7 * i + 3) % 1000 for i in range(ARGS.prompt_tokens)]
    report: dict[str, Any] = {
        "model": {"layers": ARGS.layers, "hidden": ARGS.hidden, "dtype": "fp32", "device": "cpu"},
        "threads_per_process": ARGS.threads,
        "prompt_tokens": ARGS.prompt_tokens,
        "generated_tokens": ARGS.tokens,
    }
    with tempfile.TemporaryDirectory(prefix="vrm-bench-", dir="/tmp") as tmp:
        root = Path(tmp)
        progress(f"writing a random checkpoint: {ARGS.layers} layers, hidden {ARGS.hidden}")
        model = write_random_checkpoint(
            root / "bench-llama", model_config(ARGS.layers, ARGS.hidden)
        )
        progress("single process")
        report["single_process"] = single_process(model, ARGS.layers, prompt, ARGS.tokens)
        for count in (2, 3):
            progress(f"{count} daemons")
            report[f"daemons_{count}"] = daemons(root, model, count, prompt, ARGS.tokens)
    progress("hop latency")
    report["hop"] = trio.run(hop_latency, ARGS.hops)
    single = report["single_process"]["decode_tokens_per_s"]
    ratio = report["daemons_3"]["decode_tokens_per_s"] / single
    report["decode_ratio_3_daemons_vs_single"] = ratio
    report["targets"] = {
        "decode_ratio_min": TARGET_DECODE_RATIO_MIN,
        "hop_ms_p50_max": TARGET_HOP_P50_MS_MAX,
        "hop_ms_p99_max": TARGET_HOP_P99_MS_MAX,
    }
    report["met"] = {
        "decode_ratio": ratio >= TARGET_DECODE_RATIO_MIN,
        "hop_p50": report["hop"]["hop_ms_p50"] <= TARGET_HOP_P50_MS_MAX,
        "hop_p99": report["hop"]["hop_ms_p99"] <= TARGET_HOP_P99_MS_MAX,
    }
    print(json.dumps(report, indent=2))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--tokens", type=int, default=32, help="tokens generated per run")
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hops", type=int, default=2000, help="round trips of the hop test")
    args = parser.parse_args()
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    return args


ARGS = parse_args() if __name__ == "__main__" else argparse.Namespace()

if __name__ == "__main__":
    main()
