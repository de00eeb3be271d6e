"""Seeded discrete-event simulation of SWIM + Lifeguard membership, N = 10 to 16,384.

Usage::

    python simulations/membership.py --nodes 10,100,1000 --seed 7 --loss 0.1 \\
        --periods 100 --crash 3 --json --png membership.png

Every node is a real :class:`protocol.membership.Membership` core (see
``membership_cluster.py``), warm-started from a converged member table: the run
measures a running cluster, not the join wave.  One root seed derives everything
(each cluster size gets its own stream, so ``--nodes 100`` alone reproduces the
N=100 row of a longer run).  The seed and every parameter are printed first.

Phases (after TigerBeetle's VOPR), for each N:

0. warm-up, not measured: ``WARMUP_PERIODS`` probe periods, so the first probes
   and gossip rounds of the warm-started cores (random phases) are behind us.  The
   records already carry RTT views (see ``membership_cluster.py``), so there is no
   burst of first publications to wait out.

1. safety, ``--periods`` probe periods with the faults on: datagram loss
   (``--loss``), one-way latency uniform in [0.5, 1.5] x ``--latency-ms``,
   ``--crash K`` members crashing at random times in the first 60% of the phase, a
   two-way partition over its middle third with ``--partition``, and ``--updates``
   record changes (``update_local``) on random live members, evenly spaced.
2. liveness: the network heals (no loss, no partition); within
   ``--liveness-periods`` every live member must see every live member alive and
   every crashed one dead, and every update must have reached 99.9% of the members.

Measurements (the JSON keys, per N):

``dissemination_99_9_s``
    mean time from one member's ``update_local`` until ``ceil(0.999 * live)``
    members (the origin included) hold the new version; ``_median`` and ``_max``
    over the ``--updates`` trials too.  At N <= 1,000, 99.9% means *every* live
    member, so one member missing every gossip copy waits for push-pull (30 s+) and
    dominates the mean: read the median next to it.
``detection_s``
    mean over crashes, from the crash until ``first_suspect`` (the first failed
    probe: what SWIM calls detection), ``first`` (some member declares it dead) and
    ``all`` (every member alive at the end holds it dead).
``false_dead``
    death declarations about live members (observer events), partitions excepted:
    deaths across an active partition, or within the longest suspicion timeout
    after it heals, are ``partition_dead``.
``bytes_per_member_s``
    bytes sent (datagrams and streams, as encoded) per member per second of the
    safety phase.

Anchors, computed in the same run for the same fanout, intervals and loss (see
``membership_anchors.py``): SWIM's e/(e-1) probe periods to first detection and
Serf's convergence model ``1 / (1 + (N + 1) e^(-c r))``, ``c = fanout * 0.5 * (1 -
loss)``, one round per gossip interval.

Limits: a core tracks at most ``MEMBERS_MAX`` (16,384) members, the most one
push-pull may carry, so larger clusters are refused.  The cores share one warm table
copy on write (``membership_cluster.py``), so memory grows with N plus what each core
changed, not N^2; push-pull between them carries that table by reference.

Speed: ``--core auto`` (default) runs the same core compiled with mypyc, built once
(``compiled_core.py``); ``--core pure`` the interpreted one; both give the same
figures for a seed.

Exit status 1, with "reproduce with --seed S", when an invariant fails: a false
death, no convergence in the liveness phase, an oversized datagram or a message a
core rejected.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import sys
import time
from pathlib import Path
from random import Random
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compiled_core import CORES, activate


def _prepare(argv: list[str]) -> tuple[str, list[str]]:
    """Settle the seed and print it, then choose the core (maybe building it: ~15 s).

    Both happen before anything imports ``protocol`` (a process holds one copy of it),
    and the seed comes first, so even a run whose build fails can be reproduced.
    Returns the core in use and the arguments with ``--seed`` made explicit.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--core", choices=CORES, default="auto")
    pre.add_argument("--seed", type=int, default=None)
    pre.add_argument("-h", "--help", action="store_true")
    try:
        early, _ = pre.parse_known_args(argv)
    except SystemExit:
        return "pure", argv  # parse_args will report the bad argument
    if early.help:
        return "pure", argv
    if early.seed is None:
        early.seed = Random().randrange(2**32)
        argv = [*argv, "--seed", str(early.seed)]
    print(f"membership simulation seed={early.seed}", file=sys.stderr, flush=True)
    return activate(early.core), argv


_SEED_PRINTED = __name__ == "__main__"
CORE, ARGV = _prepare(sys.argv[1:]) if _SEED_PRINTED else ("pure", sys.argv[1:])

from membership_anchors import (  # noqa: E402 (after the core is chosen)
    SERF_PUBLISHED_S,
    serf_dissemination_99_9_s,
    swim_first_detection_s,
)
from membership_cluster import Cluster, Crash  # noqa: E402

from protocol.membership import MembershipTiming  # noqa: E402
from protocol.membership.suspicion import suspicion_timeout_s  # noqa: E402
from protocol.membership.table import MEMBERS_MAX  # noqa: E402
from protocol.membership.testing import NetworkConditions  # noqa: E402

NODES_MIN = 2
CRASH_WINDOW = (0.05, 0.6)
"""Crashes happen in this share of the safety phase, so each has time to be detected."""
PARTITION_WINDOW = (1 / 3, 2 / 3)
"""The partition (``--partition``) covers this share of the safety phase."""
WARMUP_PERIODS = 2
"""Probe periods run before the safety phase (see ``warm_up``)."""
CONVERGENCE_CHECK_PERIODS = 1.0
"""Probe periods between convergence checks in the liveness phase."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--nodes", default="10,100,1000", help="comma list of cluster sizes")
    parser.add_argument("--seed", type=int, default=None, help="root seed (default: random)")
    parser.add_argument("--loss", type=float, default=0.0, help="datagram loss probability")
    parser.add_argument("--latency-ms", type=float, default=1.0, help="mean one-way latency")
    parser.add_argument("--periods", type=int, default=100, help="safety phase, probe periods")
    parser.add_argument("--crash", type=int, default=3, metavar="K", help="members crashed")
    parser.add_argument("--partition", action="store_true", help="split the cluster in two")
    parser.add_argument("--updates", type=int, default=5, help="update_local trials")
    parser.add_argument("--liveness-periods", type=int, default=300, help="liveness timeout")
    parser.add_argument("--preset", choices=("lan", "wan", "local"), default="lan")
    parser.add_argument(
        "--core",
        choices=CORES,
        default="auto",
        help="the membership core: compiled with mypyc (same source, faster; built once"
        " into .cache/mypyc), pure Python, or auto (compiled when it builds)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--png", type=Path, default=None, help="write a plot here")
    args = parser.parse_args(argv)
    try:
        args.nodes = [int(n) for n in args.nodes.split(",")]
    except ValueError:
        parser.error(f"--nodes takes a comma list of integers, got {args.nodes!r}")
    for n in args.nodes:
        if not NODES_MIN <= n <= MEMBERS_MAX:
            parser.error(
                f"--nodes {n}: a cluster holds {NODES_MIN} to {MEMBERS_MAX} members"
                " (MEMBERS_MAX in protocol/membership/table.py: one push-pull carries all)"
            )
        if args.crash >= n:
            parser.error(f"--crash {args.crash} must leave members alive at N={n}")
    if not 0.0 <= args.loss < 1.0:
        parser.error("--loss must be in [0, 1)")
    if args.latency_ms < 0 or args.periods < 1 or args.updates < 0:
        parser.error("--latency-ms, --periods and --updates must be positive")
    if args.seed is None:
        args.seed = Random().randrange(2**32)
    if args.png is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--png needs matplotlib: pip install matplotlib")
    return args


def parameters_of(args: argparse.Namespace, timing: MembershipTiming) -> dict[str, Any]:
    params = {k: v for k, v in vars(args).items() if k not in ("json", "png")}
    params["png"] = None if args.png is None else str(args.png)
    params["core"] = CORE  # the core in use
    params["timing"] = dataclasses.asdict(timing)
    return params


def anchors_of(members: int, timing: MembershipTiming, loss: float) -> dict[str, Any]:
    fanout, interval_s = timing.gossip_nodes, timing.gossip_interval_s
    return {
        "swim_first_detection_s": round(swim_first_detection_s(timing.probe_interval_s), 3),
        "serf_dissemination_99_9_s": round(
            serf_dissemination_99_9_s(members, fanout, interval_s, loss), 3
        ),
        "serf_published_s": SERF_PUBLISHED_S.get(members),
    }


def run_one(args: argparse.Namespace, members: int, timing: MembershipTiming) -> dict[str, Any]:
    """Both phases for one cluster size; the per-N JSON row."""
    rng = Random(f"membership:{args.seed}:{members}")
    latency_s = args.latency_ms / 1000
    conditions = NetworkConditions(
        loss=args.loss, latency_s_min=0.5 * latency_s, latency_s_max=1.5 * latency_s
    )
    cluster = Cluster(
        members=members, seed=rng.getrandbits(64), timing=timing, conditions=conditions
    )
    # The cores live until the end: keep the cyclic collector from re-scanning them
    # (at N=10,000 its full passes were ~5% of the run).
    gc.collect()
    gc.freeze()
    observer = cluster.observer
    warmup_s = warm_up(cluster, timing)
    safety_s = args.periods * timing.probe_interval_s
    actions = schedule(args, members, safety_s, rng)
    counters = cluster.network.counters
    bytes_before = sum(counters.bytes_sent.values())
    wall_start_s = time.perf_counter()
    for at_s, kind, value in actions:
        at_s += warmup_s
        cluster.run_until(at_s)
        if kind == "crash":
            cluster.crash(value)
            observer.crashes[value] = Crash(at_s=cluster.now)
        elif kind == "update":
            live = [i for i in cluster.live() if i not in observer.crashes]
            cluster.act_update(live[value % len(live)])
        elif kind == "partition":
            half = set(rng.sample(cluster.live(), members // 2))
            observer.side = {i: int(i in half) for i in range(members)}
            cluster.network.partition([[cluster.addrs[i] for i in half]])
            observer.partition_excuse_until_s = math.inf
        elif kind == "heal":
            cluster.network.heal()
            longest_s = timing.suspicion_max_timeout_mult * suspicion_timeout_s(
                timing.suspicion_mult, members, timing.probe_interval_s
            )
            observer.partition_excuse_until_s = cluster.now + longest_s
    cluster.run_until(warmup_s + safety_s)
    sent_bytes = sum(counters.bytes_sent.values()) - bytes_before
    safety_wall_s = time.perf_counter() - wall_start_s
    converged_s = liveness(args, cluster, timing)
    result = row(args, members, timing, cluster, sent_bytes, safety_s, converged_s, safety_wall_s)
    result["warmup_s"] = round(warmup_s, 3)
    gc.unfreeze()
    return result


def warm_up(cluster: Cluster, timing: MembershipTiming) -> float:
    """Run the first ``WARMUP_PERIODS`` probe periods, not measured; return the time."""
    cluster.run_until(WARMUP_PERIODS * timing.probe_interval_s)
    return cluster.now


def schedule(
    args: argparse.Namespace, members: int, safety_s: float, rng: Random
) -> list[tuple[float, str, int]]:
    """The fault and update plan of the safety phase, sorted by time."""
    actions: list[tuple[float, str, int]] = []
    for victim in rng.sample(range(members), args.crash):
        low, high = CRASH_WINDOW
        actions.append((rng.uniform(low, high) * safety_s, "crash", victim))
    for k in range(args.updates):
        actions.append(((k + 0.5) / args.updates * 0.9 * safety_s, "update", rng.randrange(10**9)))
    if args.partition:
        actions.append((PARTITION_WINDOW[0] * safety_s, "partition", 0))
        actions.append((PARTITION_WINDOW[1] * safety_s, "heal", 0))
    return sorted(actions)


def liveness(args: argparse.Namespace, cluster: Cluster, timing: MembershipTiming) -> float | None:
    """Heal the network; the time until the cluster converged, or None.

    The phase also lasts until every update of the safety phase has reached 99.9% of
    the members (push-pull repairs what gossip missed), so no dissemination trial is
    cut short by the end of the run; it is bounded by the same timeout.
    """
    old = cluster.network.conditions
    cluster.network.conditions = NetworkConditions(
        latency_s_min=old.latency_s_min, latency_s_max=old.latency_s_max
    )
    cluster.network.heal()
    start_s = cluster.now
    step_s = CONVERGENCE_CHECK_PERIODS * timing.probe_interval_s
    converged_s = None
    observer = cluster.observer
    while cluster.now - start_s <= args.liveness_periods * timing.probe_interval_s:
        if converged_s is None and observer.converged():
            converged_s = cluster.now - start_s
        if converged_s is not None and not observer.disseminating:
            break
        cluster.run_until(cluster.now + step_s)
    return converged_s


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def row(
    args: argparse.Namespace,
    members: int,
    timing: MembershipTiming,
    cluster: Cluster,
    sent_bytes: int,
    safety_s: float,
    converged_s: float | None,
    safety_wall_s: float,
) -> dict[str, Any]:
    observer = cluster.observer
    spread = [d.done_s for d in observer.disseminations if d.done_s is not None]
    live = cluster.live()
    crashes = observer.crashes.values()
    everyone = [
        max(c.dead_at[o] for o in live) - c.at_s
        for c in crashes
        if all(o in c.dead_at for o in live)
    ]
    counters = cluster.network.counters
    return {
        "nodes": members,
        "dissemination_99_9_s": _mean(spread),
        "dissemination_99_9_s_median": round(sorted(spread)[len(spread) // 2], 3)
        if spread
        else None,
        "dissemination_99_9_s_max": round(max(spread), 3) if spread else None,
        "disseminations_unfinished": len(observer.disseminations) - len(spread),
        "detection_s": {
            "first_suspect": _mean([c.first_suspect_s for c in crashes if c.first_suspect_s]),
            "first": _mean([c.first_dead_s for c in crashes if c.first_dead_s is not None]),
            "all": _mean(everyone),
        },
        "crashes_undetected": sum(1 for c in crashes if c.first_dead_s is None),
        "false_dead": observer.false_dead,
        "false_suspected": observer.false_suspected,
        "partition_dead": observer.partition_dead,
        "bytes_per_member_s": round(sent_bytes / (members * safety_s), 1),
        "liveness_converged_s": None if converged_s is None else round(converged_s, 3),
        "datagrams_oversized": counters.datagrams_oversized,
        "protocol_errors": cluster.protocol_errors,
        "anchors": anchors_of(members, timing, args.loss),
        "safety_wall_s": round(safety_wall_s, 2),
    }


def failures(result: dict[str, Any]) -> list[str]:
    found = []
    if result["false_dead"]:
        found.append(f"{result['false_dead']} false deaths")
    if result["liveness_converged_s"] is None:
        found.append("no convergence in the liveness phase")
    if result["datagrams_oversized"] or result["protocol_errors"]:
        found.append("an oversized datagram or a rejected message")
    return found


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    timing = getattr(MembershipTiming, args.preset)()
    params = parameters_of(args, timing)
    if not _SEED_PRINTED:
        print(f"membership simulation seed={args.seed}", file=sys.stderr)
    print(f"parameters: {json.dumps(params, sort_keys=True)}", file=sys.stderr, flush=True)
    results, failed = [], False
    for members in args.nodes:
        wall_start_s = time.perf_counter()
        result = run_one(args, members, timing)
        result["wall_s"] = round(time.perf_counter() - wall_start_s, 2)
        results.append(result)
        for failure in failures(result):
            failed = True
            print(f"N={members}: {failure}: reproduce with --seed {args.seed}", file=sys.stderr)
        if not args.json:
            print(json.dumps(result), flush=True)
    if args.json:
        print(json.dumps({"seed": args.seed, "parameters": params, "results": results}, indent=2))
    if args.png is not None:
        from membership_plot import plot

        plot(results, args.png, params)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(ARGV))
