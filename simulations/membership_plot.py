"""The PNG of a membership simulation: measured figures next to their anchors, per N.

matplotlib is imported here and only here, when ``--png`` asks for a plot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(results: list[dict[str, Any]], path: Path, params: dict[str, Any]) -> None:
    """Write a 2x2 figure: dissemination, detection, false deaths, traffic against N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nodes = [r["nodes"] for r in results]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    ax = axes[0][0]
    ax.plot(nodes, [r["dissemination_99_9_s"] for r in results], "o-", label="measured (mean)")
    ax.plot(nodes, [r["dissemination_99_9_s_max"] for r in results], "x:", label="measured (max)")
    serf = [r["anchors"]["serf_dissemination_99_9_s"] for r in results]
    ax.plot(nodes, serf, "s--", label="Serf model")
    ax.set_title("dissemination to 99.9% (s)")
    ax.legend()
    ax = axes[0][1]
    for key in ("first_suspect", "first", "all"):
        ax.plot(nodes, [r["detection_s"][key] for r in results], "o-", label=key)
    swim = [r["anchors"]["swim_first_detection_s"] for r in results]
    ax.plot(nodes, swim, "s--", label="SWIM e/(e-1) periods")
    ax.set_title("crash detection (s)")
    ax.legend()
    ax = axes[1][0]
    ax.plot(nodes, [r["false_dead"] for r in results], "o-", label="false dead")
    ax.plot(nodes, [r["false_suspected"] for r in results], "x:", label="false suspected")
    ax.set_title("false verdicts about live members (events)")
    ax.legend()
    ax = axes[1][1]
    ax.plot(nodes, [r["bytes_per_member_s"] for r in results], "o-")
    ax.set_title("bytes sent per member per second")
    for ax in axes.flat:
        ax.set_xscale("log")
        ax.set_xlabel("members (N)")
        ax.grid(True, alpha=0.3)
    fig.suptitle(
        f"SWIM + Lifeguard, seed {params['seed']}, loss {params['loss']},"
        f" {params['periods']} probe periods, preset {params['preset']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
