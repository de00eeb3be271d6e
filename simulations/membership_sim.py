"""Whole-cluster simulation of the SWIM + Lifeguard membership core.

Usage::

    python simulations/membership_sim.py --nodes 1000 --seed 7 --loss 0.05 --crash 10

Every node is a real :class:`protocol.membership.Membership` core; the network is the
seeded fake network of :mod:`protocol.membership.testing` (loss, duplication, delay).
One root seed derives everything, so a run is reproduced by its command line.

Phases (after TigerBeetle's VOPR):

1. join: nodes start at ``--join-rate`` per second, each joining through a random
   node already started; the network is faulty throughout.
2. safety: faults stay on, ``--crash`` nodes crash at random times in the first half
   of ``--safety-s``.  Measured: false suspicions and false deaths of live nodes
   (``false_*`` count observer events, ``falsely_*_nodes`` distinct live nodes, over
   the whole run), and how long each crash takes to be detected (first verdict, and
   every live node).
3. liveness: the network heals (no loss, no duplicates); the cluster must converge,
   every live node seeing exactly the live nodes alive, within ``--liveness-timeout-s``.

Output: the seed, all parameters, then one JSON summary on stdout; progress on
stderr.  The exit status is 1 when the liveness phase did not converge, a datagram
exceeded the budget or a core rejected a message as malformed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import defaultdict
from pathlib import Path
from random import Random
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from protocol.membership import (
    DATAGRAM_PLAINTEXT_BYTES_MAX,
    MemberAlive,
    MemberDead,
    MemberJoined,
    MemberLeft,
    MembershipTiming,
    MemberSuspected,
)
from protocol.membership.testing import (
    LoggedEvent,
    NetworkConditions,
    SimCluster,
)

NODE_ID_EVENTS = (MemberSuspected, MemberAlive, MemberDead, MemberLeft)
"""Events naming their member by id; the others carry its record."""
CONVERGENCE_CHECK_INTERVAL_S = 0.5
"""Simulated time between convergence checks."""
PERCENTILES = (50, 90, 99)


class Views:
    """Every node's view of the others, kept up to date from the event stream."""

    def __init__(self) -> None:
        self.alive: defaultdict[str, set[str]] = defaultdict(set)
        self.suspect: defaultdict[str, set[str]] = defaultdict(set)
        self.crashed: dict[str, float] = {}
        self.false_suspicions = 0
        self.false_deaths = 0
        self.falsely_suspected: set[str] = set()
        self.falsely_dead: set[str] = set()
        self.dead_at: defaultdict[str, dict[str, float]] = defaultdict(dict)

    def on_event(self, logged: LoggedEvent) -> None:
        observer, event = logged.observer, logged.event
        subject = event.node_id if isinstance(event, NODE_ID_EVENTS) else event.record.node_id
        if isinstance(event, (MemberJoined, MemberAlive)):
            self.alive[observer].add(subject)
            self.suspect[observer].discard(subject)
        elif isinstance(event, MemberSuspected):
            self.alive[observer].discard(subject)
            self.suspect[observer].add(subject)
            if subject not in self.crashed:
                self.false_suspicions += 1
                self.falsely_suspected.add(subject)
        elif isinstance(event, (MemberDead, MemberLeft)):
            self.alive[observer].discard(subject)
            self.suspect[observer].discard(subject)
            if subject in self.crashed:
                self.dead_at[subject].setdefault(observer, logged.at_s)
            elif isinstance(event, MemberDead):
                self.false_deaths += 1
                self.falsely_dead.add(subject)

    def converged(self, live: list[str]) -> bool:
        crashed = self.crashed.keys()
        for observer in live:
            alive = self.alive[observer]
            if len(alive) != len(live) - 1 or not alive.isdisjoint(crashed):
                return False
            if not self.suspect[observer].isdisjoint(crashed):
                return False
        return True


def percentiles(values: list[float]) -> dict[str, float | None]:
    result: dict[str, float | None] = {"max": None}
    result.update((f"p{p}", None) for p in PERCENTILES)
    if not values:
        return result
    ordered = sorted(values)
    for p in PERCENTILES:
        index = min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1)
        result[f"p{p}"] = round(ordered[index], 3)
    result["max"] = round(ordered[-1], 3)
    return result


def run_until_converged(cluster: SimCluster, views: Views, timeout_s: float) -> float | None:
    """Advance until every live node agrees; return the time taken, or None."""
    start_s = cluster.now
    while cluster.now - start_s <= timeout_s:
        if views.converged(cluster.live_ids()):
            return cluster.now - start_s
        cluster.run_for(CONVERGENCE_CHECK_INTERVAL_S)
    return None


def traffic(cluster: SimCluster, since: tuple[int, int], duration_s: float) -> dict[str, float]:
    counters = cluster.network.counters
    messages = sum(counters.messages_sent.values()) - since[0]
    sent_bytes = sum(counters.bytes_sent.values()) - since[1]
    per = len(cluster.nodes) * max(duration_s, 1e-9)
    return {
        "messages_per_node_per_s": round(messages / per, 2),
        "bytes_per_node_per_s": round(sent_bytes / per, 1),
    }


def totals(cluster: SimCluster) -> tuple[int, int]:
    counters = cluster.network.counters
    return sum(counters.messages_sent.values()), sum(counters.bytes_sent.values())


def join_phase(
    args: argparse.Namespace, cluster: SimCluster, views: Views, rng: Random
) -> dict[str, Any]:
    started: list[str] = []
    for index in range(args.nodes):
        node_id = f"n{index:04d}"
        cluster.run_until(index / args.join_rate)
        cluster.add_node(node_id, seeds=[rng.choice(started)] if started else [])
        started.append(node_id)
    last_join_s = cluster.now
    time_to_converge_s = run_until_converged(cluster, views, args.join_timeout_s)
    return {
        "joined": len(started),
        "last_join_s": round(last_join_s, 3),
        "time_to_converge_s": None if time_to_converge_s is None else round(time_to_converge_s, 3),
        "false_suspicions": views.false_suspicions,
        "false_deaths": views.false_deaths,
    }


def safety_phase(
    args: argparse.Namespace, cluster: SimCluster, views: Views, rng: Random
) -> dict[str, Any]:
    start_s = cluster.now
    before = totals(cluster)
    suspicions_before, deaths_before = views.false_suspicions, views.false_deaths
    victims = rng.sample(sorted(cluster.nodes), min(args.crash, len(cluster.nodes) - 1))
    schedule = sorted((start_s + rng.uniform(0, args.safety_s / 2), v) for v in victims)
    for crash_s, victim in schedule:
        cluster.run_until(crash_s)
        cluster.crash(victim)
        views.crashed[victim] = cluster.now
    cluster.run_until(start_s + args.safety_s)
    first, everyone, undetected = [], [], 0
    live = cluster.live_ids()
    for victim, crash_s in views.crashed.items():
        verdicts = views.dead_at.get(victim, {})
        if not verdicts:
            undetected += 1
            continue
        first.append(min(verdicts.values()) - crash_s)
        if all(observer in verdicts for observer in live):
            everyone.append(max(verdicts[o] for o in live) - crash_s)
    return {
        "duration_s": args.safety_s,
        "crashed": len(views.crashed),
        "false_suspicions": views.false_suspicions - suspicions_before,
        "falsely_suspected_nodes": len(views.falsely_suspected),
        "false_deaths": views.false_deaths - deaths_before,
        "falsely_dead_nodes": len(views.falsely_dead),
        "undetected_crashes": undetected,
        "detection_latency_first_s": percentiles(first),
        "detection_latency_all_s": percentiles(everyone),
        "traffic": traffic(cluster, before, cluster.now - start_s),
    }


def liveness_phase(args: argparse.Namespace, cluster: SimCluster, views: Views) -> dict[str, Any]:
    old = cluster.network.conditions
    cluster.network.conditions = NetworkConditions(
        latency_s_min=old.latency_s_min,
        latency_s_max=old.latency_s_max,
        stream_latency_s=old.stream_latency_s,
    )
    cluster.network.heal()
    time_to_converge_s = run_until_converged(cluster, views, args.liveness_timeout_s)
    return {
        "converged": time_to_converge_s is not None,
        "time_to_converge_s": None if time_to_converge_s is None else round(time_to_converge_s, 3),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=100, help="cluster size")
    parser.add_argument("--seed", type=int, default=None, help="root seed (default: random)")
    parser.add_argument("--loss", type=float, default=0.0, help="datagram loss probability")
    parser.add_argument("--duplicate", type=float, default=0.0, help="datagram duplication")
    parser.add_argument("--crash", type=int, default=0, help="nodes crashed in the safety phase")
    parser.add_argument("--preset", choices=("lan", "wan", "local"), default="lan")
    parser.add_argument("--latency-ms-min", type=float, default=0.2, help="one-way, datagrams")
    parser.add_argument("--latency-ms-max", type=float, default=2.0, help="one-way, datagrams")
    parser.add_argument("--join-rate", type=float, default=50.0, help="nodes started per second")
    parser.add_argument("--join-timeout-s", type=float, default=600.0)
    parser.add_argument("--safety-s", type=float, default=120.0, help="faulty phase length")
    parser.add_argument("--liveness-timeout-s", type=float, default=300.0)
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = Random().randrange(2**32)
    if args.nodes < 2:
        parser.error("--nodes must be at least 2")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wall_start = time.perf_counter()
    parameters = dict(vars(args))
    print(f"membership_sim seed={args.seed}")
    print(f"parameters: {json.dumps(parameters, sort_keys=True)}", flush=True)
    rng = Random(args.seed)
    timing = getattr(MembershipTiming, args.preset)()
    conditions = NetworkConditions(
        loss=args.loss,
        duplicate=args.duplicate,
        latency_s_min=args.latency_ms_min / 1000,
        latency_s_max=args.latency_ms_max / 1000,
    )
    cluster = SimCluster(
        seed=rng.getrandbits(64), timing=timing, conditions=conditions, log_events=False
    )
    views = Views()
    cluster.on_event = views.on_event
    print("join phase...", file=sys.stderr, flush=True)
    join = join_phase(args, cluster, views, rng)
    print("safety phase...", file=sys.stderr, flush=True)
    safety = safety_phase(args, cluster, views, rng)
    print("liveness phase...", file=sys.stderr, flush=True)
    liveness = liveness_phase(args, cluster, views)
    counters = cluster.network.counters
    summary = {
        "seed": args.seed,
        "join": join,
        "safety": safety,
        "liveness": liveness,
        "simulated_s": round(cluster.now, 3),
        "traffic_overall": traffic(cluster, (0, 0), cluster.now),
        "datagram_bytes_max": counters.datagram_bytes_max,
        "datagram_budget_bytes": DATAGRAM_PLAINTEXT_BYTES_MAX,
        "datagrams_oversized": counters.datagrams_oversized,
        "datagrams_dropped": counters.datagrams_dropped,
        "stream_messages": counters.stream_messages_sent,
        "protocol_errors": cluster.protocol_errors,
        "wall_s": round(time.perf_counter() - wall_start, 1),
    }
    print(json.dumps(summary, indent=2))
    ok = liveness["converged"] and not counters.datagrams_oversized and not cluster.protocol_errors
    if not ok:
        print(f"FAILED: reproduce with seed={args.seed}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
