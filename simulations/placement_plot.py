"""The PNG of a placement simulation: speedups per model, and ours against brute force.

matplotlib is imported here and only here (the Agg backend: no display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

BASELINE_STYLES = (
    ("exo", "tab:orange"),
    ("exo_v1", "tab:red"),
    ("llamacpp", "tab:green"),
    ("even", "tab:gray"),
)


def plot(
    rows: list[dict[str, Any]], path: Path, params: dict[str, Any], summary: dict[str, Any]
) -> None:
    """Left: ours / baseline tokens/s per model (log); right: ours vs brute force."""
    models = list(dict.fromkeys(row["model"] for row in rows))
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5), width_ratios=(2, 1))
    width = 0.8 / len(BASELINE_STYLES)
    for offset, (baseline, colour) in enumerate(BASELINE_STYLES):
        data, positions = [], []
        for index, model in enumerate(models):
            speedups = [
                row["_decode_s"][baseline] / row["_decode_s"]["ours"]
                for row in rows
                if row["model"] == model
                and row["_decode_s"]["ours"] is not None
                and row["_decode_s"][baseline] is not None
            ]
            if speedups:
                data.append(speedups)
                positions.append(index + (offset - (len(BASELINE_STYLES) - 1) / 2) * width)
        if data:
            boxes = left.boxplot(
                data, positions=positions, widths=width * 0.9, patch_artist=True, sym="."
            )
            for box in boxes["boxes"]:
                box.set_facecolor(colour)
        left.plot([], [], "s", color=colour, label=f"vs {baseline}")
    left.axhline(1.0, color="black", linewidth=0.8)
    left.set_yscale("log")
    left.set_xticks(range(len(models)), models, rotation=20)
    left.set_ylabel("ours tokens/s / baseline tokens/s")
    left.set_title("speedup where both fit (same cost model, same memory limits)")
    left.legend()
    left.grid(True, axis="y", alpha=0.3)
    pairs = [
        (1.0 / row["_decode_s"]["brute_force"], 1.0 / row["_decode_s"]["ours"])
        for row in rows
        if row["_decode_s"]["brute_force"] is not None and row["_decode_s"]["ours"] is not None
    ]
    if pairs:
        brute, mine = zip(*pairs, strict=True)
        right.scatter(brute, mine, s=12)
        low, high = min(brute), max(brute)
        right.plot([low, high], [low, high], color="black", linewidth=0.8, label="y = x")
        right.set_xscale("log")
        right.set_yscale("log")
        right.legend()
    right.set_xlabel("brute force tokens/s")
    right.set_ylabel("ours tokens/s")
    right.set_title(f"optimality (max gap {summary['max_gap_to_optimal']})")
    right.grid(True, alpha=0.3)
    fig.suptitle(
        f"placement, seed {params['seed']}, {summary['instances']} instances, nodes "
        f"{params['nodes']}, context {params['context']}, throughput {params['throughput']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
